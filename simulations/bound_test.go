package simulations

import (
	"math"
	"testing"
)

func TestFluidBound(t *testing.T) {
	t.Parallel()
	one := func(r float64) Dist { return Dist{{Rate: Rate(r), Weight: 1}} }
	for _, tc := range []struct {
		name string
		sc   Scenario
		want float64
	}{
		// S=100, U_o=10, D=1000, 1 host with U=10: max(100/10, 100/1000,
		// 1·100/(10+10)) = max(10, 0.1, 5) = 10: the origin's one copy.
		{"origin bound", Scenario{Hosts: 1, PackageSize: 100, ChunkSize: 10, OriginUpload: 10, HostUpload: one(10), HostDownload: one(1000)}, 10},
		// S=100, U_o=1000, D=20: the host's download: 100/20 = 5
		// (N·S/(U_o+ΣU) = 10·100/(1000+10·10) = 0.91).
		{"download bound", Scenario{Hosts: 10, PackageSize: 100, ChunkSize: 10, OriginUpload: 1000, HostUpload: one(10), HostDownload: one(20)}, 5},
		// S=100, U_o=100, 100 hosts of U=1, D=1000: N·S/(U_o+ΣU) =
		// 10000/(100+100) = 50 > S/U_o = 1: the swarm's upload.
		{"upload bound", Scenario{Hosts: 100, PackageSize: 100, ChunkSize: 10, OriginUpload: 100, HostUpload: one(1), HostDownload: one(1000)}, 50},
		// Mixed uploads 0 and 4 (mean 2 with weights 1:1), 50 hosts,
		// S=100, U_o=100: 5000/(100+100) = 25; the slowest download 10
		// of {10, 1000}: 100/10 = 10. Bound 25.
		{"mixed", Scenario{Hosts: 50, PackageSize: 100, ChunkSize: 10, OriginUpload: 100,
			HostUpload: Dist{{Rate: 0.001, Weight: 1}, {Rate: 3.999, Weight: 1}}, HostDownload: Dist{{Rate: 10, Weight: 1}, {Rate: 1000, Weight: 3}}}, 25},
		// A new version sharing 3/4 of the chunks: S = 25 bytes to move,
		// one host, U_o=5: 25/5 = 5.
		{"new version", Scenario{Hosts: 1, PackageSize: 100, ChunkSize: 10, OriginUpload: 5, HostUpload: one(1), HostDownload: one(1000), NewVersion: NewVersion{Reuse: 0.75}}, 5},
	} {
		if got := FluidBound(tc.sc); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("FluidBound(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
