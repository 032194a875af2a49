package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// userBodyLimit bounds the JSON body of every user endpoint.
const userBodyLimit = 64 << 10

// timeLayout is how every time appears on the wire: RFC 3339, UTC, milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// wireTime is a time on the wire, from unix nanoseconds.
type wireTime int64

func (t wireTime) MarshalJSON() ([]byte, error) {
	return appendTime(make([]byte, 0, 26), int64(t)), nil
}

// appendTime appends unix nanoseconds ns as a quoted wire time.
func appendTime(b []byte, ns int64) []byte {
	b = append(b, '"')
	b = time.Unix(0, ns).UTC().AppendFormat(b, timeLayout)
	return append(b, '"')
}

// appendString appends s as a JSON string. Bytes that are not valid UTF-8
// become U+FFFD, as encoding/json does.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xf])
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// writeRaw writes a JSON body that is already encoded.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(status)
	w.Write(body)
}

var (
	jsonContentType = []string{"application/json"}
	nosniff         = []string{"nosniff"}
)

// writeJSON encodes v and writes it. It is for responses off the publish
// hot path, where encoding/json's cost does not matter.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeRaw(w, status, b)
}

// mediaType returns the lower-cased media type of a Content-Type value,
// without parameters.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// decodeJSON reads a JSON body of at most limit bytes into v. The body must
// be labelled application/json and hold exactly one value that decodeStrict
// takes, with no unknown fields.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if mediaType(r.Header.Get("Content-Type")) != "application/json" {
		return withDetail(errUnsupportedMedia, "the body must be application/json")
	}
	if r.ContentLength > limit {
		return errRequestTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errRequestTooLarge
		}
		if isTimeout(err) {
			return withDetail(errBodyTimeout, "the body did not arrive in time")
		}
		return withDetail(errBadJSON, "could not read the body")
	}
	// The body is in. (After a failed read the deadline stays: net/http
	// then gives up on the rest of the body at once and closes.)
	clearReadDeadline(w)
	return decodeStrict(body, v, true)
}

// The options of decodeStrict. jsonv2 matches names case-sensitively and
// refuses duplicate names by default; encoding/json did neither, so that
// {"LABEL":"x"} set the label and {"label":"a","label":"b"} took the last.
var (
	strictOptions  = jsonv2.JoinOptions(jsonv2.RejectUnknownMembers(true))
	lenientOptions = jsonv2.JoinOptions(jsonv2.RejectUnknownMembers(false))
)

// decodeStrict decodes one JSON value, the whole of data, into v: every
// JSON body and every device frame goes through it. Field names match
// exactly (case included), a name repeated in an object is refused, and so
// are invalid UTF-8 and data after the value; with rejectUnknown, so is a
// field v does not have. The error is errBadJSON with a detail in the
// client's terms.
func decodeStrict(data []byte, v any, rejectUnknown bool) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return withDetail(errBadJSON, "the body is empty")
	}
	opts := lenientOptions
	if rejectUnknown {
		opts = strictOptions
	}
	if err := jsonv2.Unmarshal(data, v, opts); err != nil {
		return withDetail(errBadJSON, jsonErrorDetail(err))
	}
	return nil
}

// jsonErrorDetail says what was wrong with a JSON body, in the client's
// terms (fields and offsets), without Go type names.
func jsonErrorDetail(err error) string {
	var se *jsontext.SyntacticError
	var me *jsonv2.SemanticError
	switch {
	case errors.Is(err, jsontext.ErrDuplicateName) && errors.As(err, &se):
		return "duplicate field " + strconv.Quote(se.JSONPointer.LastToken()) + " at byte " + strconv.FormatInt(se.ByteOffset, 10)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON body ends too early"
	case errors.As(err, &se):
		if strings.Contains(se.Err.Error(), "after top-level value") {
			return "data after the JSON value"
		}
		if strings.Contains(se.Err.Error(), "UTF-8") {
			return "the body is not valid UTF-8"
		}
		return "invalid JSON at byte " + strconv.FormatInt(se.ByteOffset, 10)
	case errors.As(err, &me):
		if errors.Is(me.Err, jsonv2.ErrUnknownName) {
			return "unknown field " + strconv.Quote(me.JSONPointer.LastToken()) + " (field names are case-sensitive)"
		}
		if me.JSONPointer == "" {
			return "the body must be a JSON object"
		}
		if me.JSONKind != 0 {
			return "field " + strconv.Quote(string(me.JSONPointer)) + " must not be a JSON " + kindName(me.JSONKind)
		}
		return "field " + strconv.Quote(string(me.JSONPointer)) + " has a bad value"
	}
	return "invalid JSON"
}

// kindName names a JSON kind as the client knows it.
func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 'f', 't':
		return "boolean"
	case '"':
		return "string"
	case '0':
		return "number"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return "value"
}
