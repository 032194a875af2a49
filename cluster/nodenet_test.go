package cluster

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/notifyhub/hub/mailbox"
)

// FuzzNodeHello: the listener's reader of a dialer's hello (stream kind and
// proof) and the dialer's reader of the answer take any bytes without
// panicking, and accept only the right proof and a known stream kind.
func FuzzNodeHello(f *testing.F) {
	want := bytes.Repeat([]byte{7}, proofLen)
	f.Add(append([]byte{helloVersion, streamRaft}, want...))
	f.Add(append([]byte{helloVersion, streamHTTP}, want...))
	f.Add(append([]byte{answerOK}, want...))
	f.Add(append([]byte{answerNo}, make([]byte, proofLen)...))
	f.Add([]byte{helloVersion})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, err := readHello(bytes.NewReader(b), want)
		if err == nil {
			if len(b) < helloLen || b[0] != helloVersion || (kind != streamRaft && kind != streamHTTP) || kind != b[1] || !bytes.Equal(b[2:helloLen], want) {
				t.Fatalf("hello %x accepted as kind %d", b, kind)
			}
		}
		if err := readAnswer(bytes.NewReader(b), want); err == nil {
			if len(b) < answerLen || b[0] != answerOK || !bytes.Equal(b[1:answerLen], want) {
				t.Fatalf("answer %x accepted", b)
			}
		} else if !errors.Is(err, ErrBadSecret) && len(b) >= answerLen {
			t.Fatalf("a whole answer %x refused without ErrBadSecret: %v", b, err)
		}
	})
}

// TestEntryErrorSaysWhatToDo: an entry the FSM cannot decode or apply is an
// error that names the index, the kind and the way out, and changes nothing.
func TestEntryErrorSaysWhatToDo(t *testing.T) {
	store, err := mailbox.Open(filepath.Join(t.TempDir(), "badger"), mailbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	f := newFSM(store, nil)
	for _, tc := range []struct {
		data []byte
		kind string
	}{
		{[]byte{1, byte(mailbox.KindCreateUser), '{', '}'}, "(unknown)"},
		{[]byte{9, 9, 9}, "(unknown)"},
		{[]byte{metaEntry, '{'}, "(cluster entry)"},
		{append([]byte{metaEntry}, `{"op":"rename","id":"x"}`...), "(cluster entry)"},
	} {
		_, err := f.apply(&raft.Log{Index: 42, Type: raft.LogCommand, Data: tc.data})
		var ee *EntryError
		if !errors.As(err, &ee) || ee.Index != 42 {
			t.Fatalf("apply %x: %v, want an EntryError at 42", tc.data, err)
		}
		msg := err.Error()
		for _, s := range []string{"raft log entry 42", tc.kind, "backup", "docs/operations.md", "--join"} {
			if !strings.Contains(msg, s) {
				t.Errorf("message %q does not say %q", msg, s)
			}
		}
		if f.index.Load() != 0 || store.Applied() != 0 {
			t.Errorf("the entry moved the index: fsm %d, store %d", f.index.Load(), store.Applied())
		}
	}
}
