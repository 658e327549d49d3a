// Package heads finds the retrieval heads of a model from needle-in-a-haystack
// probes: the offline step of CompressKV (arXiv 2508.02401) that picks, per
// layer, the query heads whose attention decides which tokens a compressed
// cache keeps.
//
// A probe is a prompt with an answer span A (the token positions of the
// needle's answer) that the model must copy out under greedy decoding. A
// Recorder receives, at every decode step t, the emitted token y_t and, for
// every layer and query head h, the attention row a[h] of the query that
// produced y_t, and accumulates two scores per head:
//
//   - The semantic retrieval (SR) score of CompressKV (the paper's Eq. 5): if
//     y_t is one of the answer's tokens, the head's whole attention mass on
//     the span, sum_{j in A} a[h][j], is added. It rewards a head that looks
//     at the answer while the answer is produced, even when its single
//     strongest weight lies elsewhere or on a neighbouring token, so heads that
//     attend to the meaning of a span (not only to the token being copied)
//     score too. The reference code adds the mass once per occurrence of y_t in
//     the span (Multiplicity, the default); the paper adds it once (Indicator).
//   - The classic retrieval score (Wu et al. 2024, "Retrieval Head
//     Mechanistically Explains Long-Context Factuality"): the head's single
//     most-attended position (ties toward the lowest position) must lie inside
//     A and hold the token y_t; each such step adds 1/|A|. It finds copy heads
//     only, and is kept for comparison and ablation.
//
// Scores are accumulated per trial; a trial counts only if the caller reports
// it successful (the model answered correctly), and a head's score is the mean
// of its per-trial scores over the counted trials. Scores.Ranking orders each
// layer's heads by score, ties toward the lower head index, and Scores.Top
// keeps the first k: the SR heads of the layer.
//
// The package also reads and writes the two JSON files of the reference
// implementation, per-trial scores {"<layer>-<head>": [scores...]} and
// rankings {"<layer>": [heads...]}, so published profiles of large models can
// be used as they are.
package heads
