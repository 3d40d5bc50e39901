package node

import (
	"bytes"
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
