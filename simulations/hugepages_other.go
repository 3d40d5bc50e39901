//go:build !linux

package simulations

func adviseHugePages(bool) {}
