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
// be labelled application/json, hold exactly one value and no unknown fields.
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
		return withDetail(errBadJSON, "could not read the body")
	}
	if !utf8.Valid(body) {
		return withDetail(errBadJSON, "the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return withDetail(errBadJSON, "the body is empty")
		}
		return withDetail(errBadJSON, jsonErrorDetail(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return withDetail(errBadJSON, "data after the JSON value")
	}
	return nil
}

// jsonErrorDetail says what was wrong with a JSON body, in the client's
// terms (fields and offsets), without Go type names.
func jsonErrorDetail(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "invalid JSON at byte " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &te):
		if te.Field != "" {
			return "field " + strconv.Quote(te.Field) + " must not be a JSON " + te.Value
		}
		return "the body must be a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON body ends too early"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "invalid JSON"
}
