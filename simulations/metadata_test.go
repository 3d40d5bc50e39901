package simulations

import (
	"strings"
	"testing"
)

// metaHosts: 10 hosts with 2 VMs each over 3 sites, a small package.
func metaHosts() Scenario {
	sc := DefaultScenario()
	sc.Name = "meta"
	sc.Hosts = 10
	sc.VMsPerHost = 2
	sc.Sites = 3
	sc.PackageSize = 4 << 20
	return sc
}

// TestMetadataBytes: the origin's metadata and manifest bytes by
// strategy: every host (every VM, origin-per-vm) takes per_host; the
// files once per host without cooperative fetching, once in all with
// swarm-coop, once per site with swarm-sites. They are counted beside
// the chunk bytes, which stay as without the section, as does the time.
func TestMetadataBytes(t *testing.T) {
	t.Parallel()
	const perHost, files = 1000, 5000
	for _, tc := range []struct {
		st   Strategy
		want float64
	}{
		{OriginPerVM, 20 * (perHost + files)},
		{OriginPerHost, 10 * (perHost + files)},
		{Swarm, 10 * (perHost + files)},
		{SwarmLocality, 10 * (perHost + files)},
		{SwarmCoop, 10*perHost + files},
		{SwarmSites, 10*perHost + 3*files},
	} {
		t.Run(string(tc.st), func(t *testing.T) {
			t.Parallel()
			sc := metaHosts()
			plain, err := Run(sc, tc.st)
			if err != nil {
				t.Fatal(err)
			}
			sc.Metadata = Metadata{PerHost: perHost, Files: files}
			r, err := Run(sc, tc.st)
			if err != nil {
				t.Fatal(err)
			}
			if r.MetadataBytes != tc.want {
				t.Errorf("Run(%s).MetadataBytes = %v, want %v", tc.st, r.MetadataBytes, tc.want)
			}
			if got := r.OriginTotal(); got != r.OriginBytes+tc.want {
				t.Errorf("OriginTotal() = %v, want %v", got, r.OriginBytes+tc.want)
			}
			if r.OriginBytes != plain.OriginBytes || r.Makespan != plain.Makespan || r.Offload != plain.Offload {
				t.Errorf("with metadata: origin %v, makespan %v, offload %v; want %v, %v, %v as without",
					r.OriginBytes, r.Makespan, r.Offload, plain.OriginBytes, plain.Makespan, plain.Offload)
			}
			if plain.MetadataBytes != 0 {
				t.Errorf("without the section: MetadataBytes = %v, want 0", plain.MetadataBytes)
			}
		})
	}
}

// TestMetadataSitesFewHosts: swarm-sites fetches the files once per site
// that has a host, not per configured site.
func TestMetadataSitesFewHosts(t *testing.T) {
	t.Parallel()
	sc := metaHosts()
	sc.Hosts, sc.Sites = 2, 5
	sc.Metadata = Metadata{PerHost: 10, Files: 100}
	r, err := Run(sc, SwarmSites)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2*10 + 2*100.0; r.MetadataBytes != want {
		t.Errorf("MetadataBytes = %v, want %v", r.MetadataBytes, want)
	}
}

// TestMetadataWorkload: in a workload, per_host is one refresh per host
// and files are every package's together, counted once, not once per
// package.
func TestMetadataWorkload(t *testing.T) {
	t.Parallel()
	sc := metaHosts()
	sc.Packages = Packages{Count: 5, Sizes: "testdata/debian12-main-sizes.tsv", MaxSize: 64 << 10, Seed: 23}
	sc.Metadata = Metadata{PerHost: 700, Files: 9000}
	for _, tc := range []struct {
		st   Strategy
		want float64
	}{
		{Swarm, 10 * (700 + 9000)},
		{SwarmCoop, 10*700 + 9000},
	} {
		r, err := Run(sc, tc.st)
		if err != nil {
			t.Fatal(err)
		}
		if r.MetadataBytes != tc.want {
			t.Errorf("workload %s: MetadataBytes = %v, want %v", tc.st, r.MetadataBytes, tc.want)
		}
	}
}

// TestMetadataParse: the section reads sizes and refuses negative ones.
func TestMetadataParse(t *testing.T) {
	t.Parallel()
	sc, err := ParseScenario([]byte(`{"metadata": {"per_host": "1K", "files": 2048}}`))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Metadata != (Metadata{PerHost: 1024, Files: 2048}) {
		t.Errorf("ParseScenario: metadata %+v, want per_host 1024, files 2048", sc.Metadata)
	}
	_, err = ParseScenario([]byte(`{"metadata": {"per_host": -1}}`))
	if err == nil || !strings.Contains(err.Error(), "metadata") {
		t.Errorf("negative per_host: err %v, want one naming metadata", err)
	}
}
