package metadata

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

const (
	journalCID  = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
	journalCID2 = "bafkreidvbhs33ighmljlvr7zbv2ywwzcmp5adtf4kqvlly67cy56bdtmve"
)

func TestDecodeRetired(t *testing.T) {
	t.Parallel()
	good := "{\n \"stork_retired\": 1,\n \"manifests\": {\n  \"" + journalCID2 + "\": \"2030-01-02T04:04:05Z\",\n  \"" + journalCID + "\": \"2030-01-02T03:04:05Z\"\n }\n}\n"
	for _, tc := range []struct {
		name string
		data string
		want error
	}{
		{"canonical", good, nil},
		{"empty", "{\n \"stork_retired\": 1,\n \"manifests\": {}\n}\n", nil},
		{"compact", `{"stork_retired":1,"manifests":{}}`, ErrMalformed},
		{"unknown field", "{\n \"stork_retired\": 1,\n \"manifests\": {},\n \"x\": 1\n}\n", ErrMalformed},
		{"data after", good + "{}", ErrMalformed},
		{"other format", strings.Replace(good, `"stork_retired": 1`, `"stork_retired": 2`, 1), ErrMalformed},
		{"not a CID", strings.Replace(good, journalCID, "manifest", 1), ErrMalformed},
		{"CID not canonical", strings.Replace(good, journalCID, strings.ToUpper(journalCID), 1), ErrMalformed},
		{"fractional time", strings.Replace(good, "03:04:05Z", "03:04:05.5Z", 1), ErrMalformed},
		{"offset time", strings.Replace(good, "03:04:05Z", "03:04:05+01:00", 1), ErrMalformed},
		{"duplicate key", strings.Replace(good, journalCID2, journalCID, 1), ErrMalformed},
		{"null manifests", "{\n \"stork_retired\": 1,\n \"manifests\": null\n}\n", ErrMalformed},
		{"too large", good + strings.Repeat(" ", maxRetiredFileSize), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := decodeRetired([]byte(tc.data))
			if !errors.Is(err, tc.want) || (tc.want != nil) == (err == nil) {
				t.Fatalf("decodeRetired(%s) = %v, want %v", tc.name, err, tc.want)
			}
			if err != nil {
				return
			}
			if enc, err := j.encode(); err != nil || string(enc) != tc.data {
				t.Errorf("encode(decodeRetired(%s)) = %q, %v; want the input", tc.name, enc, err)
			}
		})
	}
}

func TestRetiredUpdate(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	j := newRetiredJournal()
	j.Manifests[journalCID] = now.Add(-time.Hour)         // window over: leaves
	j.Manifests[journalCID2] = now.Add(-59 * time.Minute) // within: stays
	named := "bafkreie5cvv4h45feqeu6t2a6rrcuzwh3gghsgeaqanwcw4h2spwmi7egu"
	j.Manifests[named] = now.Add(-time.Minute)
	future := "bafkreiaf4ojfgnrhlxlwijb2xsvyc5nvguaoxhchnnrmxtayzl4szkrbmm"
	j.Manifests[future] = now.Add(time.Hour)
	retired := "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bvpsb6e57y4tvvli"
	if err := j.update(now.Add(500*time.Millisecond), time.Hour, map[string]bool{named: true}, map[string]bool{retired: true}); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{journalCID2: now.Add(-59 * time.Minute), future: now, retired: now}
	if len(j.Manifests) != len(want) {
		t.Fatalf("update left %v, want %v", j.Manifests, want)
	}
	for c, w := range want {
		if got := j.Manifests[c]; !got.Equal(w) {
			t.Errorf("update: %s retired at %v, want %v", c, got, w)
		}
	}
	if err := j.update(now, 0, nil, map[string]bool{retired: true}); err != nil || len(j.Manifests) != 0 {
		t.Errorf("update with keep 0 left %v, %v; want nothing", j.Manifests, err)
	}
	big := newRetiredJournal()
	many := map[string]bool{}
	for i := range maxRetired + 1 {
		many[SumCID([]byte{byte(i), byte(i >> 8), byte(i >> 16)}).String()] = true
	}
	if err := big.update(now, time.Hour, nil, many); !errors.Is(err, ErrTooLarge) {
		t.Errorf("update past %d entries = %v, want ErrTooLarge", maxRetired, err)
	}
}

func FuzzDecodeRetired(f *testing.F) {
	j := newRetiredJournal()
	j.Manifests[journalCID] = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	good, err := j.encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("{\n \"stork_retired\": 1,\n \"manifests\": {}\n}\n"))
	f.Add([]byte(`{"stork_retired":1,"manifests":{"x":"2030-01-02T03:04:05Z"}}`))
	f.Add(bytes.Replace(good, []byte("05Z"), []byte("05.000000001Z"), 1))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := decodeRetired(data)
		if err != nil {
			return
		}
		if len(j.Manifests) > maxRetired {
			t.Fatalf("accepted journal of %d entries", len(j.Manifests))
		}
		enc, err := j.encode()
		if err != nil || !bytes.Equal(enc, data) {
			t.Fatalf("accepted journal re-encodes differently (%v):\n%s\n%s", err, data, enc)
		}
		for c, tm := range j.Manifests {
			if !isCIDName(c) || tm.Location() != time.UTC || !tm.Equal(tm.Truncate(time.Second)) {
				t.Fatalf("accepted entry %s %v", c, tm)
			}
		}
	})
}
