package policy

// The end game: with the last few chunks missing, an idle peer may be
// asked for a chunk already asked of another, and the loser is cancelled.

// Endgame reports whether the end game is on.
func (p *Picker) Endgame() bool {
	return p.cfg.EndgameThreshold >= 0 && p.remaining > 0 && p.remaining <= p.cfg.EndgameThreshold
}

// nextEndgame is the end game's pick for peer s at t: the least-requested
// missing chunk the peer has and was not asked for (at most
// EndgameDuplicates requests open, all of them late: endgameLate),
// starting at a random place.
func (p *Picker) nextEndgame(sl *peerSlot, s int32, t int64) (int, bool) {
	best, bestN := -1, p.cfg.EndgameDuplicates
	m := len(p.missing.items)
	start := p.rng.IntN(m)
	for k := range m {
		i := int(p.missing.items[(start+k)%m])
		if !sl.have.Has(i) || int(p.ck[i].reqCount) >= bestN || p.askedFrom(i, s) || !p.endgameLate(i, t) {
			continue
		}
		best, bestN = i, int(p.ck[i].reqCount)
	}
	return best, best >= 0
}

// endgameLate reports whether every open request of chunk i is older at t
// than EndgameDelay.
func (p *Picker) endgameLate(i int, t int64) bool {
	if p.cfg.EndgameDelay < 0 {
		return true
	}
	wait := float64(p.cfg.EndgameDelay)
	for id := p.ck[i].reqHead; id >= 0; id = p.recs[id].next {
		if float64(t-p.recs[id].at) < wait {
			return false
		}
	}
	return true
}
