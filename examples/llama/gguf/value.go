package gguf

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// ValueType is the type of a metadata value, numbered as GGUF numbers it.
type ValueType uint32

// The metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

// String returns the type's name in GGUF's spelling ("uint32", "string",
// "array"), or "ValueType(N)" for an id GGUF does not define.
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// size returns the encoded size of a scalar of type t, 0 for strings and
// arrays (variable) and -1 for an undefined type.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	case TypeString, TypeArray:
		return 0
	}
	return -1
}

// minSize is the fewest bytes one encoded value of type t takes: its
// scalar size, a string's length prefix, an array's type and count.
func (t ValueType) minSize() int {
	switch t {
	case TypeString:
		return 8
	case TypeArray:
		return 12
	}
	return t.size()
}

// Value is one metadata value: a scalar, a string or an array. The zero
// Value is invalid (Type uint8 with no payload); values come from a parsed
// File or from ValueOf.
type Value struct {
	// Type is the value's type; TypeArray for an array.
	Type ValueType
	// Elem is the element type of an array (TypeArray for an array of
	// arrays); unused for a scalar.
	Elem ValueType
	// v holds the Go value: uint8, int8, uint16, int16, uint32, int32,
	// float32, bool, string, uint64, int64 or float64 for a scalar; a
	// slice of those for an array; []Value for an array of arrays.
	v any
}

// ErrType is wrapped by the errors of the typed getters when a value has
// another type than the one asked for.
var ErrType = errors.New("gguf: wrong value type")

// TypeError says that a metadata value (of key Key, when known) has type
// Got where the caller wants Want. It wraps ErrType.
type TypeError struct {
	Key       string // the key, "" when the value was not looked up by key
	Got, Want string // the value's type and the wanted one, as "uint32" or "array of string"
}

// Error says which key (when known) has which type, and the type wanted.
func (e *TypeError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("gguf: value is %s, want %s", e.Got, e.Want)
	}
	return fmt.Sprintf("gguf: key %q is %s, want %s", e.Key, e.Got, e.Want)
}

// Unwrap returns ErrType.
func (e *TypeError) Unwrap() error { return ErrType }

// ValueOf returns the Value of a Go value: uint8, int8, uint16, int16,
// uint32, int32, float32, bool, string, uint64, int64, float64 or a slice
// of one of them, []Value for an array of arrays (each element an array),
// or a Value itself. Other types give an error wrapping ErrType.
func ValueOf(x any) (Value, error) {
	switch x := x.(type) {
	case Value:
		if err := x.check(0); err != nil {
			return Value{}, err
		}
		return x, nil
	case uint8:
		return Value{Type: TypeUint8, v: x}, nil
	case int8:
		return Value{Type: TypeInt8, v: x}, nil
	case uint16:
		return Value{Type: TypeUint16, v: x}, nil
	case int16:
		return Value{Type: TypeInt16, v: x}, nil
	case uint32:
		return Value{Type: TypeUint32, v: x}, nil
	case int32:
		return Value{Type: TypeInt32, v: x}, nil
	case float32:
		return Value{Type: TypeFloat32, v: x}, nil
	case bool:
		return Value{Type: TypeBool, v: x}, nil
	case string:
		return Value{Type: TypeString, v: x}, nil
	case uint64:
		return Value{Type: TypeUint64, v: x}, nil
	case int64:
		return Value{Type: TypeInt64, v: x}, nil
	case float64:
		return Value{Type: TypeFloat64, v: x}, nil
	case []uint8:
		return array(TypeUint8, x), nil
	case []int8:
		return array(TypeInt8, x), nil
	case []uint16:
		return array(TypeUint16, x), nil
	case []int16:
		return array(TypeInt16, x), nil
	case []uint32:
		return array(TypeUint32, x), nil
	case []int32:
		return array(TypeInt32, x), nil
	case []float32:
		return array(TypeFloat32, x), nil
	case []bool:
		return array(TypeBool, x), nil
	case []string:
		return array(TypeString, x), nil
	case []uint64:
		return array(TypeUint64, x), nil
	case []int64:
		return array(TypeInt64, x), nil
	case []float64:
		return array(TypeFloat64, x), nil
	case []Value:
		v := array(TypeArray, x)
		if err := v.check(0); err != nil {
			return Value{}, err
		}
		return v, nil
	}
	return Value{}, &TypeError{Got: fmt.Sprintf("Go type %T", x), Want: "a GGUF value type"}
}

func array[T any](elem ValueType, s []T) Value {
	return Value{Type: TypeArray, Elem: elem, v: s}
}

// check reports whether v is well formed: its payload matches its type,
// arrays of arrays hold only arrays, and nesting stays within maxDepth.
func (v Value) check(depth int) error {
	if depth >= maxDepth {
		return &TypeError{Got: fmt.Sprintf("arrays nested deeper than %d", maxDepth), Want: "shallower nesting"}
	}
	if v.Type != TypeArray {
		if v.Type.size() < 0 || !scalarMatches(v.Type, v.v) {
			return &TypeError{Got: fmt.Sprintf("%v holding %T", v.Type, v.v), Want: "a consistent value"}
		}
		return nil
	}
	if v.Elem == TypeArray {
		s, ok := v.v.([]Value)
		if !ok {
			return &TypeError{Got: fmt.Sprintf("array of arrays holding %T", v.v), Want: "[]Value"}
		}
		for _, e := range s {
			if e.Type != TypeArray {
				return &TypeError{Got: "array of arrays holding " + e.typeName(), Want: "arrays only"}
			}
			if err := e.check(depth + 1); err != nil {
				return err
			}
		}
		return nil
	}
	if v.Elem.size() < 0 || !arrayMatches(v.Elem, v.v) {
		return &TypeError{Got: fmt.Sprintf("array of %v holding %T", v.Elem, v.v), Want: "a consistent value"}
	}
	return nil
}

func scalarMatches(t ValueType, x any) bool {
	switch x.(type) {
	case uint8:
		return t == TypeUint8
	case int8:
		return t == TypeInt8
	case uint16:
		return t == TypeUint16
	case int16:
		return t == TypeInt16
	case uint32:
		return t == TypeUint32
	case int32:
		return t == TypeInt32
	case float32:
		return t == TypeFloat32
	case bool:
		return t == TypeBool
	case string:
		return t == TypeString
	case uint64:
		return t == TypeUint64
	case int64:
		return t == TypeInt64
	case float64:
		return t == TypeFloat64
	}
	return false
}

func arrayMatches(t ValueType, x any) bool {
	switch x.(type) {
	case []uint8:
		return t == TypeUint8
	case []int8:
		return t == TypeInt8
	case []uint16:
		return t == TypeUint16
	case []int16:
		return t == TypeInt16
	case []uint32:
		return t == TypeUint32
	case []int32:
		return t == TypeInt32
	case []float32:
		return t == TypeFloat32
	case []bool:
		return t == TypeBool
	case []string:
		return t == TypeString
	case []uint64:
		return t == TypeUint64
	case []int64:
		return t == TypeInt64
	case []float64:
		return t == TypeFloat64
	}
	return false
}

// Any returns the Go value: a scalar (uint8 ... float64, bool, string), a
// slice of them for an array, or []Value for an array of arrays. Slices
// are the Value's own: do not modify them.
func (v Value) Any() any { return v.v }

// Len returns the number of elements of an array, 0 for a scalar.
func (v Value) Len() int {
	switch s := v.v.(type) {
	case []uint8:
		return len(s)
	case []int8:
		return len(s)
	case []uint16:
		return len(s)
	case []int16:
		return len(s)
	case []uint32:
		return len(s)
	case []int32:
		return len(s)
	case []float32:
		return len(s)
	case []bool:
		return len(s)
	case []string:
		return len(s)
	case []uint64:
		return len(s)
	case []int64:
		return len(s)
	case []float64:
		return len(s)
	case []Value:
		return len(s)
	}
	return 0
}

// typeName describes the value's type: "uint32", "array of string",
// "array of array".
func (v Value) typeName() string {
	if v.Type == TypeArray {
		return "array of " + v.Elem.String()
	}
	return v.Type.String()
}

func (v Value) typeErr(want string) error {
	return &TypeError{Got: v.typeName(), Want: want}
}

// Uint returns an integer value of any integer type as a uint64; a
// negative value gives a TypeError.
func (v Value) Uint() (uint64, error) {
	switch x := v.v.(type) {
	case uint8:
		return uint64(x), nil
	case uint16:
		return uint64(x), nil
	case uint32:
		return uint64(x), nil
	case uint64:
		return x, nil
	case int8, int16, int32, int64:
		i, _ := v.Int()
		if i < 0 {
			return 0, &TypeError{Got: fmt.Sprintf("%v %d", v.Type, i), Want: "a non-negative integer"}
		}
		return uint64(i), nil
	}
	return 0, v.typeErr("an integer")
}

// Int returns an integer value of any integer type as an int64; a uint64
// above math.MaxInt64 gives a TypeError.
func (v Value) Int() (int64, error) {
	switch x := v.v.(type) {
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case uint8, uint16, uint32:
		u, _ := v.Uint()
		return int64(u), nil
	case uint64:
		if x > math.MaxInt64 {
			return 0, &TypeError{Got: fmt.Sprintf("uint64 %d", x), Want: "an integer that fits int64"}
		}
		return int64(x), nil
	}
	return 0, v.typeErr("an integer")
}

// Float returns a float32 or float64 value as a float64.
func (v Value) Float() (float64, error) {
	switch x := v.v.(type) {
	case float32:
		return float64(x), nil
	case float64:
		return x, nil
	}
	return 0, v.typeErr("float32 or float64")
}

// Bool returns a bool value.
func (v Value) Bool() (bool, error) {
	if x, ok := v.v.(bool); ok {
		return x, nil
	}
	return false, v.typeErr("bool")
}

// Str returns a string value.
func (v Value) Str() (string, error) {
	if x, ok := v.v.(string); ok {
		return x, nil
	}
	return "", v.typeErr("string")
}

// Strings returns an array of strings. The slice is the Value's own.
func (v Value) Strings() ([]string, error) {
	if x, ok := v.v.([]string); ok {
		return x, nil
	}
	return nil, v.typeErr("array of string")
}

// Float32s returns an array of float32. The slice is the Value's own.
func (v Value) Float32s() ([]float32, error) {
	if x, ok := v.v.([]float32); ok {
		return x, nil
	}
	return nil, v.typeErr("array of float32")
}

// Int32s returns an array of any integer type as a new []int32; an element
// that does not fit int32 gives a TypeError.
func (v Value) Int32s() ([]int32, error) {
	if x, ok := v.v.([]int32); ok {
		return append([]int32(nil), x...), nil
	}
	return convertInts(v, func(i int64) (int32, bool) { return int32(i), i >= math.MinInt32 && i <= math.MaxInt32 }, "array of integers that fit int32")
}

// Ints returns an array of any integer type as a new []int; an element that
// does not fit int gives a TypeError.
func (v Value) Ints() ([]int, error) {
	return convertInts(v, func(i int64) (int, bool) { return int(i), int64(int(i)) == i }, "array of integers that fit int")
}

func convertInts[T any](v Value, conv func(int64) (T, bool), want string) ([]T, error) {
	if v.Type != TypeArray {
		return nil, v.typeErr(want)
	}
	n := v.Len()
	out := make([]T, n)
	for i := range n {
		var x int64
		ok := true
		switch s := v.v.(type) {
		case []uint8:
			x = int64(s[i])
		case []int8:
			x = int64(s[i])
		case []uint16:
			x = int64(s[i])
		case []int16:
			x = int64(s[i])
		case []uint32:
			x = int64(s[i])
		case []int32:
			x = int64(s[i])
		case []int64:
			x = s[i]
		case []uint64:
			x, ok = int64(s[i]), s[i] <= math.MaxInt64
		default:
			return nil, v.typeErr(want)
		}
		y, fits := conv(x)
		if !ok || !fits {
			return nil, &TypeError{Got: fmt.Sprintf("%s with element %d out of range", v.typeName(), i), Want: want}
		}
		out[i] = y
	}
	return out, nil
}

// Values returns the elements of an array of arrays. The slice is the
// Value's own.
func (v Value) Values() ([]Value, error) {
	if x, ok := v.v.([]Value); ok {
		return x, nil
	}
	return nil, v.typeErr("array of array")
}

// String formats the value for people: scalars as Go prints them, strings
// quoted, arrays as their first elements and their length.
func (v Value) String() string {
	if v.Type != TypeArray {
		if s, ok := v.v.(string); ok {
			return fmt.Sprintf("%q", s)
		}
		return fmt.Sprint(v.v)
	}
	const show = 8
	n := v.Len()
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < n && i < show; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(v.index(i).String())
	}
	if n > show {
		fmt.Fprintf(&b, " ... (%d %s)", n, v.Elem)
	}
	b.WriteByte(']')
	return b.String()
}

// index returns element i of an array as a Value.
func (v Value) index(i int) Value {
	var x any
	switch s := v.v.(type) {
	case []uint8:
		x = s[i]
	case []int8:
		x = s[i]
	case []uint16:
		x = s[i]
	case []int16:
		x = s[i]
	case []uint32:
		x = s[i]
	case []int32:
		x = s[i]
	case []float32:
		x = s[i]
	case []bool:
		x = s[i]
	case []string:
		x = s[i]
	case []uint64:
		x = s[i]
	case []int64:
		x = s[i]
	case []float64:
		x = s[i]
	case []Value:
		return s[i]
	}
	return Value{Type: v.Elem, v: x}
}
