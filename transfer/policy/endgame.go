package policy

// The end game: with the last few chunks missing, an idle peer may be
// asked for a chunk already asked of another, and the loser is cancelled.

// Endgame reports whether the end game is on.
func (p *Picker) Endgame() bool {
	return p.cfg.EndgameThreshold >= 0 && p.remaining > 0 && p.remaining <= p.cfg.EndgameThreshold
}

// nextEndgame is the end game's pick for peer s: the least-requested
// missing chunk the peer has and was not asked for (at most
// EndgameDuplicates requests open), starting at a random place.
func (p *Picker) nextEndgame(sl *peerSlot, s int32) (int, bool) {
	best, bestN := -1, p.cfg.EndgameDuplicates
	m := len(p.missing.items)
	start := p.rng.IntN(m)
	for k := range m {
		i := int(p.missing.items[(start+k)%m])
		if !sl.have.Has(i) || int(p.ck[i].reqCount) >= bestN || p.askedFrom(i, s) {
			continue
		}
		best, bestN = i, int(p.ck[i].reqCount)
	}
	return best, best >= 0
}
