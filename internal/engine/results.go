package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxResultSize bounds a step's result (bytes of JSON), as MaxJSONSize bounds inputs and context: a result is
// handed to every dependent step's claim, so an unbounded one could make the claims of a whole queue fail.
const MaxResultSize = MaxJSONSize

// nulEscape is how JSON writes U+0000, which PostgreSQL's jsonb cannot store.
var nulEscape = []byte(`\u0000`)

// CheckResult says why result cannot be recorded as a step's result (nil when it can): it is not valid JSON, it
// is larger than MaxResultSize, or a string in it holds the character U+0000, which jsonb cannot store. Workers
// call it before reporting, so that such a result fails its own step with the reason instead of the report.
func CheckResult(result json.RawMessage) error {
	switch {
	case len(bytes.TrimSpace(result)) == 0:
		return nil
	case len(result) > MaxResultSize:
		return fmt.Errorf("result is %d bytes of JSON, more than the limit of %d", len(result), MaxResultSize)
	case !json.Valid(result):
		return errors.New("result is not valid JSON")
	case hasNUL(result):
		return errors.New(`result holds the character U+0000 ("\u0000" in JSON), which PostgreSQL's jsonb cannot store`)
	}
	return nil
}

// hasNUL reports whether a string (or key) of the valid JSON v holds U+0000.
func hasNUL(v json.RawMessage) bool {
	if !bytes.Contains(v, nulEscape) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return false
		}
		if s, ok := tok.(string); ok && strings.ContainsRune(s, 0) {
			return true
		}
	}
}

// withoutNUL replaces U+0000 in the strings (and keys) of the valid JSON v with U+FFFD, so that a failure's details
// are recorded rather than refused by jsonb. v is returned as is when it holds none.
func withoutNUL(v json.RawMessage) (json.RawMessage, error) {
	if !hasNUL(v) {
		return v, nil
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	return json.Marshal(replaceNUL(doc))
}

func replaceNUL(v any) any {
	switch x := v.(type) {
	case string:
		return strings.ReplaceAll(x, "\x00", "\uFFFD")
	case []any:
		for i := range x {
			x[i] = replaceNUL(x[i])
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[strings.ReplaceAll(k, "\x00", "\uFFFD")] = replaceNUL(e)
		}
		return out
	}
	return v
}
