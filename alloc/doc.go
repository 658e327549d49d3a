// Package alloc computes per-layer KV-cache budgets: how many tokens each
// transformer layer keeps after compression, the observation window included.
//
// Three allocators share one convention, an average budget b per layer:
//
//   - [Uniform] gives every layer b tokens (SnapKV, StreamingLLM, H2O, Ada-KV).
//   - [Pyramid] is PyramidKV's schedule: budgets fall linearly from the first
//     layer to the last around the average, with the observation window kept by
//     every layer. It follows the reference code's integer arithmetic, so the
//     budgets need not sum exactly to n*b.
//   - [ErrorAware] is CompressKV's allocation (docs/DESIGN.md ("Error-aware layer budgets")): the
//     budget above a floor is spread in proportion to per-layer weights, rounded
//     half to even (numpy's round), clipped to [lo, hi], then corrected one token
//     at a time so that the budgets sum exactly to n*b.
//
// The weights of [ErrorAware] come from an error metric measured offline. At
// every decode step, for every layer l, the attention block output (after the
// output projection, before the residual add) is computed over the full cache
// and over that layer's compressed cache; the relative error
//
//	e_l += ||O_comp - O_full|| / (||O_full|| + eps),   eps = 1e-5,
//
// is summed over steps and samples of a data set ([ErrorAccumulator]). The sums
// are normalised to 1 per data set, averaged over data sets and normalised
// again ([Average]). [ReadReferenceScores] imports the same weights from the
// reference implementation's per-layer score file.
package alloc
