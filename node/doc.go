// Package node is the host daemon: the libp2p host and DHT, identity,
// configuration, lifecycle and the local API server. It wires transfer,
// share and metadata together through small interfaces.
package node
