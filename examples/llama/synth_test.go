package llama

import (
	"os"
	"path/filepath"
	"testing"
)

// loadSynth writes s as a GGUF file in a temporary directory and loads it.
func loadSynth(t *testing.T, s *synth) *Model {
	t.Helper()
	path := writeSynth(t, s)
	m, err := LoadGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// writeSynth writes s as a GGUF file in a temporary directory.
func writeSynth(t *testing.T, s *synth) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "synth.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := memSynth(t, s).WriteGGUF(f, GGUFOptions{Name: "synth"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// memSynth builds the runner's model of s in memory.
func memSynth(t testing.TB, s *synth) *Model {
	t.Helper()
	c := s.cfg
	d, qd, kv, hd := c.Dim, c.QDim(), c.KVDim(), c.Hidden
	mat := func(rows, cols int, w []float32) matrix {
		if s.data == nil {
			return f32Matrix(rows, cols, f32Bytes(w))
		}
		m, err := newMatrix(s.typ, rows, cols, s.data[&w[0]])
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := &Model{Config: c, emb: mat(c.Vocab, d, s.emb), finalNorm: s.finalNorm, clsBias: s.outBias, ropeFactors: s.ropeFactors}
	m.SharedClassifier = s.out == nil
	m.cls = m.emb
	if s.out != nil {
		m.cls = mat(c.Vocab, d, s.out)
	}
	for _, ly := range s.layers {
		m.layers = append(m.layers, layer{
			attNorm: ly.attNorm, ffnNorm: ly.ffnNorm,
			wq: mat(qd, d, ly.wq), wk: mat(kv, d, ly.wk), wv: mat(kv, d, ly.wv), wo: mat(d, qd, ly.wo),
			bq: ly.bq, bk: ly.bk, bv: ly.bv, bo: ly.bo, qNorm: ly.qNorm, kNorm: ly.kNorm,
			gate: mat(hd, d, ly.gate), up: mat(hd, d, ly.up), down: mat(d, hd, ly.down),
			bGate: ly.bGate, bUp: ly.bUp, bDown: ly.bDown,
		})
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}
