package node

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzVMRequest feeds arbitrary bodies to the request decoder the VM and
// admin endpoints use: never a panic, never more than maxRequestBody read,
// and an accepted body decodes to a request that validation can judge.
func FuzzVMRequest(f *testing.F) {
	for _, s := range []string{`{"ref":"hello"}`, `{"ref":"hello@1.0.0"}`, `{"ref":1}`, `{"ref":"a","into":"/etc"}`, `{`, `[]`, `{"ref":"a"}{"ref":"b"}`, `{"vm":"x","ref":"y","into":"/a","mode":"bind"}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&struct {
			Ref string `json:"ref"`
		}{}, &InstallRequest{}, &VM{}} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/v1/install", bytes.NewReader(body))
			req.Body = http.MaxBytesReader(rec, req.Body, maxRequestBody)
			if err := decodeRequest(req, v); err != nil {
				continue
			}
			if len(body) > maxRequestBody {
				t.Fatalf("accepted a %d-byte body over the %d limit", len(body), maxRequestBody)
			}
			if vm, ok := v.(*VM); ok {
				_ = vm.Validate()
			}
			if ir, ok := v.(*InstallRequest); ok {
				_, _ = parseViewMode(ir.Mode)
				_ = validVMID(ir.VM)
			}
		}
	})
}

// FuzzFilesAnswer feeds arbitrary answers to the /stork/files reader:
// never a panic, never more than maxLen bytes accepted.
func FuzzFilesAnswer(f *testing.F) {
	ok := append([]byte{filesOK}, binary.AppendUvarint(nil, 3)...)
	for _, s := range [][]byte{append(ok, "abc"...), ok, {filesNotFound}, {filesBusy}, {filesTooLarge}, {filesBad}, {9}, {}, {filesOK, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}} {
		f.Add(s, int64(16))
	}
	f.Fuzz(func(t *testing.T, b []byte, maxLen int64) {
		maxLen = max(maxLen%(1<<20), 0)
		data, err := readFilesAnswer(bufio.NewReader(bytes.NewReader(b)), maxLen)
		if err == nil && int64(len(data)) > maxLen {
			t.Fatalf("accepted %d bytes over the %d limit", len(data), maxLen)
		}
	})
}
