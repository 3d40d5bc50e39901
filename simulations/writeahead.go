package simulations

// Write-ahead (Scenario.WriteAhead): a daemon without an upload cap sends a
// chunk of more than policy.PartSize as ChunkParts and checks for a Cancel
// between parts, but its writes return as soon as the bytes are in the
// socket's send buffer, which on a path of tens of milliseconds holds
// about a whole chunk. A Cancel that reaches the sender (the receiver got
// the chunk elsewhere, withdrew the request, or the end game's duplicate
// won) therefore stops nothing already written: the chunk crosses every
// link on its way and the receiver throws it away. The simulator lets the
// cancelled flow run to its end, keeping the sender's session busy as the
// daemon's writer is, and counts its bytes as received over the links
// they crossed (from_site_B, from_wan_B), as the testbed's link counters
// do, and as duplicates (dup_B), but delivers nothing.

// discarded counts the bytes of f, a flow the sender was asked to cancel
// and sent whole, into its receiver's link counters.
func (s *sim) discarded(f flow) {
	hs := &s.hosts[f.dst]
	if hs.site == s.hosts[f.srv].site {
		hs.fromSite += f.size
	} else {
		hs.fromWAN += f.size
	}
	hs.dup += f.size
}
