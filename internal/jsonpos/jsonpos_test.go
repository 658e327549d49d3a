package jsonpos

import "testing"

func TestWhereAndLiterals(t *testing.T) {
	data := []byte("{\"a\": 1,\n  \"b\": NaN, \"c\": \"NaN\"}")
	if got := Where(data, 11); got != "line 2, column 3" {
		t.Fatalf("Where = %q", got)
	}
	if got := Where(data, -5); got != "line 1, column 1" {
		t.Fatalf("Where(-5) = %q", got)
	}
	if off := SkipSpace(data, 7); off != 11 {
		t.Fatalf("SkipSpace = %d, want 11", off)
	}
	if lit, i := NonFiniteLiteral(data); lit != "NaN" || i != 16 {
		t.Fatalf("NonFiniteLiteral = %q at %d", lit, i)
	}
	if lit, i := NonFiniteLiteral([]byte(`{"x": "Infinity \" -Infinity"}`)); i != -1 {
		t.Fatalf("a literal inside a string was reported: %q at %d", lit, i)
	}
	if lit, _ := NonFiniteLiteral([]byte(`[1, -Infinity]`)); lit != "-Infinity" {
		t.Fatalf("-Infinity read as %q", lit)
	}
}
