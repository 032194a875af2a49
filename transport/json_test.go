package transport

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkDecodeBatch measures decoding a 100-item POST /v1/push body (the
// batch publish path's JSON), strict checks included.
func BenchmarkDecodeBatch(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"messages":[`)
	for i := range 100 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"token":"%043d","data":"%s","ttl":60,"topic":"t%d","urgency":"normal"}`, i, strings.Repeat("x", 200), i)
	}
	sb.WriteString(`]}`)
	body := sb.String()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/v1/push", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req batchRequest
		if err := decodeJSON(httptest.NewRecorder(), r, 1<<20, &req); err != nil || len(req.Messages) != 100 {
			b.Fatal(err)
		}
	}
}
