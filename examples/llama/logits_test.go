package llama

import (
	"slices"
	"testing"
)

func TestTop(t *testing.T) {
	logits := []float32{1, 3, 2, 3, -1, 3, 0}
	if got := Top(logits, 5); !slices.Equal(got, []int{1, 3, 5, 2, 0}) {
		t.Fatalf("top five %v, want ties to the lower id", got)
	}
	if got := Top(logits[:2], 5); !slices.Equal(got, []int{1, 0}) {
		t.Fatalf("top of two %v", got)
	}
	if Argmax(logits) != 1 {
		t.Fatal("argmax does not break ties to the lower id")
	}
}
