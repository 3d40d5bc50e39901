// Package transfer moves chunks. Its work is split by job into packages,
// each with a doc.go that states its rules:
//
//   - transfer/policy: which chunk to ask next and from whom (rarest
//     first, the origin partitioned and paced among the swarm's members,
//     the end game). Pure code: no I/O, no clock, no import of the
//     project, so that package simulations runs the very decisions the
//     daemon makes.
//   - transfer/swarm: the swarm's wire protocol, its sessions with peers,
//     and the engine (Swarm) that downloads a package from peers and the
//     origin, verifying every chunk, and serves peers. It declares the
//     interfaces it needs (network, discovery, chunk store, chunk source),
//     which node implements with libp2p and the host store.
//   - transfer/origin: HTTP only: the repository client, `stork get`'s
//     verified download of a tree (Get), and `stork repo serve`'s server.
//   - transfer/transfertest: in-memory fakes of the swarm's interfaces
//     (network, discovery, chunk store, chunk source) and the conformance
//     suites every implementation of them passes.
//
// Imports point one way: the swarm imports the policy; the policy and the
// origin import neither each other nor the swarm; node joins them.
package transfer
