// Package simulations is a discrete-event simulation of many hosts that
// drives the real piece-selection and origin policy code from transfer, to
// measure repository offload and completion time at scales no single
// machine can run.
//
// simulations imports transfer and metadata only.
package simulations
