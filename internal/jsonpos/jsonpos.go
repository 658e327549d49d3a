// Package jsonpos names places in JSON text for error messages: the line
// and column of a byte offset, and Python's bare NaN and Infinity literals,
// which encoding/json rejects without saying where.
package jsonpos

import (
	"bytes"
	"fmt"
)

// Where names byte offset off of data (clamped to it) as "line L, column C",
// both counted from 1, columns in bytes.
func Where(data []byte, off int64) string {
	off = min(max(off, 0), int64(len(data)))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(data[:off], '\n'))
	return fmt.Sprintf("line %d, column %d", line, col)
}

// SkipSpace returns the offset of the first byte at or after off that is
// not JSON white space or a separator (',' or ':').
func SkipSpace(data []byte, off int64) int64 {
	off = max(off, 0)
	for off < int64(len(data)) && bytes.IndexByte([]byte(" \t\r\n,:"), data[off]) >= 0 {
		off++
	}
	return off
}

// NonFiniteLiteral returns the first bare NaN, Infinity or -Infinity outside
// JSON strings in data and its offset, or "" and -1.
func NonFiniteLiteral(data []byte) (string, int) {
	inString, escaped := false, false
	for i, c := range data {
		switch {
		case inString:
			if escaped {
				escaped = false
			} else if c == '\\' {
				escaped = true
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		default:
			for _, lit := range []string{"NaN", "Infinity", "-Infinity"} {
				if bytes.HasPrefix(data[i:], []byte(lit)) {
					return lit, i
				}
			}
		}
	}
	return "", -1
}
