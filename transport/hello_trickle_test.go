package transport_test

import (
	"encoding/binary"
	"io"
	"testing"
	"time"
)

// TestWSHelloTrickled: the hello timeout runs from the upgrade, so a device
// that sends part of its hello and then nothing (or trickles it) cannot
// stretch it: it gets the close frame 4400 protocol_error like a silent one.
func TestWSHelloTrickled(t *testing.T) {
	cfg := openConfig()
	cfg.Limits.HelloTimeout = 300 * time.Millisecond
	h := startHub(t, cfg)
	// The frame header says 40 bytes; 10 come.
	c := h.dialRawWS(t, string([]byte{0x81, 0x80 | 40, 0, 0, 0, 0})+`{"type":"h`)
	for {
		hdr := make([]byte, 2)
		if _, err := io.ReadFull(c.br, hdr); err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		n := int(hdr[1] & 0x7f)
		if n >= 126 {
			t.Fatalf("unexpected long frame")
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(c.br, payload); err != nil {
			t.Fatalf("read frame: %v", err)
		}
		if hdr[0]&0x0f != 8 {
			continue
		}
		if n < 2 {
			t.Fatal("close frame without a code")
		}
		if code := binary.BigEndian.Uint16(payload); code != 4400 {
			t.Fatalf("close code %d, want 4400", code)
		}
		return
	}
}
