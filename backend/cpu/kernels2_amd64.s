//go:build amd64 && !noasm

#include "textflag.h"

// AVX2 (with FMA and F16C) logit and weighted-sum kernels for
// kernels_amd64.go, in the arithmetic the AVX-512 kernels share (see
// kernels512_amd64.s): a logit's column c goes to lane c%16 of a pair of
// ymm accumulators (A: lanes 0..7, B: lanes 8..15), reduced as t8 = A+B,
// then strides 4, 2 and 1; weighted sums add row after row.

// RED2X4 reduces four accumulator pairs (Y0,Y1) (Y2,Y3) (Y4,Y5) (Y6,Y7)
// to their four sums in X0, in that order; uses Y4, Y5 and X1.
#define RED2X4 \
	VADDPS Y1, Y0, Y0; \
	VADDPS Y3, Y2, Y1; \
	VADDPS Y5, Y4, Y2; \
	VADDPS Y7, Y6, Y3; \
	VPERM2F128 $0x20, Y2, Y0, Y4; \
	VPERM2F128 $0x31, Y2, Y0, Y5; \
	VADDPS Y5, Y4, Y0; \
	VPERM2F128 $0x20, Y3, Y1, Y4; \
	VPERM2F128 $0x31, Y3, Y1, Y5; \
	VADDPS Y5, Y4, Y1; \
	VSHUFPS $0x44, Y1, Y0, Y4; \
	VSHUFPS $0xEE, Y1, Y0, Y5; \
	VADDPS Y5, Y4, Y0; \
	VSHUFPS $0x88, Y0, Y0, Y4; \
	VSHUFPS $0xDD, Y0, Y0, Y5; \
	VADDPS Y5, Y4, Y0; \
	VEXTRACTF128 $1, Y0, X1; \
	VUNPCKLPD X1, X0, X0

#define ZERO8 \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y1, Y1, Y1; \
	VXORPS Y2, Y2, Y2; \
	VXORPS Y3, Y3, Y3; \
	VXORPS Y4, Y4, Y4; \
	VXORPS Y5, Y5, Y5; \
	VXORPS Y6, Y6, Y6; \
	VXORPS Y7, Y7, Y7

// Row loads of the quad kernels: one ymm of 8 float32 values from 8 stored
// values at addr, in each storage type.
#define LDF32(addr, reg) VMOVUPS addr, reg
#define LDF16(addr, reg) VCVTPH2PS addr, reg
#define LDBF16(addr, reg) VPMOVZXWD addr, reg; VPSLLD $16, reg, reg

// LOGITSQ2 is the body of logitsQuad*AVX2: one row at a time (BX, stride
// R11, HB bytes per 8 columns) against the 4 query heads at SI (head
// stride R8, 3 strides R9), head h into the pair (Y2h, Y2h+1); the four
// sums, scaled by X15, to dst (DI); running maxima in X14. R14 is the end
// of head 0's whole 16-column chunks.
#define LOGITSQ2(LD, HB) \
row: \
	ZERO8; \
	MOVQ BX, R10; \
	MOVQ SI, R12; \
chunk: \
	CMPQ R12, R14; \
	JAE  half; \
	PREFETCHT2 (R10)(R13*1); \
	LD((R10), Y8); \
	LD(HB(R10), Y9); \
	VFMADD231PS (R12), Y8, Y0; \
	VFMADD231PS 32(R12), Y9, Y1; \
	VFMADD231PS (R12)(R8*1), Y8, Y2; \
	VFMADD231PS 32(R12)(R8*1), Y9, Y3; \
	VFMADD231PS (R12)(R8*2), Y8, Y4; \
	VFMADD231PS 32(R12)(R8*2), Y9, Y5; \
	VFMADD231PS (R12)(R9*1), Y8, Y6; \
	VFMADD231PS 32(R12)(R9*1), Y9, Y7; \
	ADDQ $64, R12; \
	ADDQ $(2*HB), R10; \
	JMP  chunk; \
half: \
	TESTQ $8, DX; \
	JZ    red; \
	LD((R10), Y8); \
	VFMADD231PS (R12), Y8, Y0; \
	VFMADD231PS (R12)(R8*1), Y8, Y2; \
	VFMADD231PS (R12)(R8*2), Y8, Y4; \
	VFMADD231PS (R12)(R9*1), Y8, Y6; \
red: \
	RED2X4; \
	VMULPS X15, X0, X0; \
	VMOVUPS X0, (DI); \
	VMAXPS X14, X0, X14; \
	ADDQ $16, DI; \
	ADDQ R11, BX; \
	DECQ CX; \
	JNZ  row; \
	VMOVUPS X14, (AX); \
	VZEROUPPER; \
	RET

// LOGITSQ2_SETUP loads the arguments of logitsQuad*AVX2; SH is log2 of
// the stored value's size.
#define LOGITSQ2_SETUP(SH) \
	MOVQ dst_base+0(FP), DI; \
	MOVQ dst_len+8(FP), CX; \
	MOVQ q_base+24(FP), SI; \
	MOVQ q_len+32(FP), DX; \
	MOVQ rows_base+48(FP), BX; \
	MOVQ mx+80(FP), AX; \
	SHRQ $2, CX; \
	SHRQ $2, DX; \
	VBROADCASTSS scale+72(FP), Y15; \
	VMOVUPS (AX), X14; \
	MOVQ DX, R8; \
	SHLQ $2, R8; \
	LEAQ (R8)(R8*2), R9; \
	MOVQ DX, R11; \
	SHLQ $SH, R11; \
	MOVQ DX, R14; \
	ANDQ $-16, R14; \
	LEAQ (SI)(R14*4), R14; \
	MOVQ pf+88(FP), R13

// ACCQ2 is the body of accQuad*AVX2: acc (DI, 4 heads of d values, head
// stride R8, 3 strides R9) += the rows (BX, stride R11, HB bytes per 8
// columns) weighted by p (SI, 4 values a row), row after row: two rows at
// a time, their 8 weights broadcast in Y8..Y15 (row r head h in Y8+4r+h),
// each 8-column chunk of the 4 heads' accumulators loaded, updated by the
// two rows in order and stored; then one row. R14 is the end of head 0.
#define ACCQ2(LD, HB) \
pair: \
	CMPQ CX, $2; \
	JB   tail; \
	VBROADCASTSS (SI), Y8; \
	VBROADCASTSS 4(SI), Y9; \
	VBROADCASTSS 8(SI), Y10; \
	VBROADCASTSS 12(SI), Y11; \
	VBROADCASTSS 16(SI), Y12; \
	VBROADCASTSS 20(SI), Y13; \
	VBROADCASTSS 24(SI), Y14; \
	VBROADCASTSS 28(SI), Y15; \
	MOVQ DI, R12; \
	MOVQ BX, R10; \
	MOVQ pf+72(FP), AX; \
	ADDQ BX, AX; \
chunk2: \
	PREFETCHT2 (AX); \
	ADDQ $(2*HB), AX; \
	LD((R10), Y0); \
	LD((R10)(R11*1), Y1); \
	VMOVUPS (R12), Y2; \
	VMOVUPS (R12)(R8*1), Y3; \
	VMOVUPS (R12)(R8*2), Y4; \
	VMOVUPS (R12)(R9*1), Y5; \
	VFMADD231PS Y8, Y0, Y2; \
	VFMADD231PS Y9, Y0, Y3; \
	VFMADD231PS Y10, Y0, Y4; \
	VFMADD231PS Y11, Y0, Y5; \
	VFMADD231PS Y12, Y1, Y2; \
	VFMADD231PS Y13, Y1, Y3; \
	VFMADD231PS Y14, Y1, Y4; \
	VFMADD231PS Y15, Y1, Y5; \
	VMOVUPS Y2, (R12); \
	VMOVUPS Y3, (R12)(R8*1); \
	VMOVUPS Y4, (R12)(R8*2); \
	VMOVUPS Y5, (R12)(R9*1); \
	ADDQ $32, R12; \
	ADDQ $HB, R10; \
	CMPQ R12, R14; \
	JB   chunk2; \
	ADDQ $32, SI; \
	LEAQ (BX)(R11*2), BX; \
	SUBQ $2, CX; \
	JMP  pair; \
tail: \
	TESTQ CX, CX; \
	JZ    done; \
	VBROADCASTSS (SI), Y8; \
	VBROADCASTSS 4(SI), Y9; \
	VBROADCASTSS 8(SI), Y10; \
	VBROADCASTSS 12(SI), Y11; \
	MOVQ DI, R12; \
	MOVQ BX, R10; \
chunk1: \
	LD((R10), Y0); \
	VMOVUPS (R12), Y2; \
	VMOVUPS (R12)(R8*1), Y3; \
	VMOVUPS (R12)(R8*2), Y4; \
	VMOVUPS (R12)(R9*1), Y5; \
	VFMADD231PS Y8, Y0, Y2; \
	VFMADD231PS Y9, Y0, Y3; \
	VFMADD231PS Y10, Y0, Y4; \
	VFMADD231PS Y11, Y0, Y5; \
	VMOVUPS Y2, (R12); \
	VMOVUPS Y3, (R12)(R8*1); \
	VMOVUPS Y4, (R12)(R8*2); \
	VMOVUPS Y5, (R12)(R9*1); \
	ADDQ $32, R12; \
	ADDQ $HB, R10; \
	CMPQ R12, R14; \
	JB   chunk1; \
done: \
	VZEROUPPER; \
	RET

#define ACCQ2_SETUP(SH) \
	MOVQ acc_base+0(FP), DI; \
	MOVQ acc_len+8(FP), DX; \
	MOVQ p_base+24(FP), SI; \
	MOVQ p_len+32(FP), CX; \
	MOVQ rows_base+48(FP), BX; \
	SHRQ $2, CX; \
	SHRQ $2, DX; \
	MOVQ DX, R8; \
	SHLQ $2, R8; \
	LEAQ (R8)(R8*2), R9; \
	MOVQ DX, R11; \
	SHLQ $SH, R11; \
	LEAQ (DI)(R8*1), R14

// func dotsAVX2(dst, q, rows []float32, scale float32)
// dst[j] = scale * q . rows[j*d:(j+1)*d], d = len(q) a multiple of 8,
// len(dst) >= 1; four rows at a time, then one.
TEXT ·dotsAVX2(SB), NOSPLIT, $0-76
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ q_base+24(FP), SI
	MOVQ q_len+32(FP), DX
	MOVQ rows_base+48(FP), BX
	VBROADCASTSS scale+72(FP), Y15
	MOVQ DX, R8
	SHLQ $2, R8             // row stride in bytes
	LEAQ (R8)(R8*2), R9     // 3 strides
	MOVQ DX, R14
	ANDQ $-16, R14
	LEAQ (SI)(R14*4), R14   // end of q's whole 16-column chunks

d2_block4:
	CMPQ CX, $4
	JB   d2_tail
	ZERO8
	MOVQ BX, R10
	MOVQ SI, R12

d2_inner4:
	CMPQ R12, R14
	JAE  d2_half4
	VMOVUPS (R12), Y8
	VMOVUPS 32(R12), Y9
	VFMADD231PS (R10), Y8, Y0
	VFMADD231PS 32(R10), Y9, Y1
	VFMADD231PS (R10)(R8*1), Y8, Y2
	VFMADD231PS 32(R10)(R8*1), Y9, Y3
	VFMADD231PS (R10)(R8*2), Y8, Y4
	VFMADD231PS 32(R10)(R8*2), Y9, Y5
	VFMADD231PS (R10)(R9*1), Y8, Y6
	VFMADD231PS 32(R10)(R9*1), Y9, Y7
	ADDQ $64, R10
	ADDQ $64, R12
	JMP  d2_inner4

d2_half4:
	TESTQ $8, DX
	JZ    d2_red4
	VMOVUPS (R12), Y8
	VFMADD231PS (R10), Y8, Y0
	VFMADD231PS (R10)(R8*1), Y8, Y2
	VFMADD231PS (R10)(R8*2), Y8, Y4
	VFMADD231PS (R10)(R9*1), Y8, Y6

d2_red4:
	RED2X4
	VMULPS X15, X0, X0
	VMOVUPS X0, (DI)
	ADDQ $16, DI
	LEAQ (BX)(R8*4), BX
	SUBQ $4, CX
	JMP  d2_block4

d2_tail:
	TESTQ CX, CX
	JZ    d2_done
	ZERO8
	MOVQ BX, R10
	MOVQ SI, R12

d2_inner1:
	CMPQ R12, R14
	JAE  d2_half1
	VMOVUPS (R12), Y8
	VMOVUPS 32(R12), Y9
	VFMADD231PS (R10), Y8, Y0
	VFMADD231PS 32(R10), Y9, Y1
	ADDQ $64, R10
	ADDQ $64, R12
	JMP  d2_inner1

d2_half1:
	TESTQ $8, DX
	JZ    d2_red1
	VMOVUPS (R12), Y8
	VFMADD231PS (R10), Y8, Y0

d2_red1:
	RED2X4
	VMULSS X15, X0, X0
	VMOVSS X0, (DI)
	ADDQ $4, DI
	ADDQ R8, BX
	DECQ CX
	JMP  d2_tail

d2_done:
	VZEROUPPER
	RET

// func accRowsAVX2(acc, p, rows []float32)
// acc += sum_j p[j] * rows[j*d:(j+1)*d], row after row, d = len(acc) a
// multiple of 8, len(p) >= 1: strips of 64, 32 and 8 columns held in
// registers while the rows go by.
TEXT ·accRowsAVX2(SB), NOSPLIT, $0-72
	MOVQ acc_base+0(FP), DI
	MOVQ acc_len+8(FP), DX
	MOVQ p_base+24(FP), SI
	MOVQ p_len+32(FP), CX
	MOVQ rows_base+48(FP), BX
	MOVQ DX, R8
	SHLQ $2, R8             // row stride in bytes
	XORQ AX, AX             // column offset in bytes

ar2_cols64:
	LEAQ 256(AX), R10
	CMPQ R10, R8
	JA   ar2_cols32
	VMOVUPS (DI)(AX*1), Y0
	VMOVUPS 32(DI)(AX*1), Y1
	VMOVUPS 64(DI)(AX*1), Y2
	VMOVUPS 96(DI)(AX*1), Y3
	VMOVUPS 128(DI)(AX*1), Y4
	VMOVUPS 160(DI)(AX*1), Y5
	VMOVUPS 192(DI)(AX*1), Y6
	VMOVUPS 224(DI)(AX*1), Y7
	LEAQ (BX)(AX*1), R11
	MOVQ SI, R12
	MOVQ CX, R13

ar2_rows64:
	VBROADCASTSS (R12), Y8
	VFMADD231PS (R11), Y8, Y0
	VFMADD231PS 32(R11), Y8, Y1
	VFMADD231PS 64(R11), Y8, Y2
	VFMADD231PS 96(R11), Y8, Y3
	VFMADD231PS 128(R11), Y8, Y4
	VFMADD231PS 160(R11), Y8, Y5
	VFMADD231PS 192(R11), Y8, Y6
	VFMADD231PS 224(R11), Y8, Y7
	ADDQ R8, R11
	ADDQ $4, R12
	DECQ R13
	JNZ  ar2_rows64

	VMOVUPS Y0, (DI)(AX*1)
	VMOVUPS Y1, 32(DI)(AX*1)
	VMOVUPS Y2, 64(DI)(AX*1)
	VMOVUPS Y3, 96(DI)(AX*1)
	VMOVUPS Y4, 128(DI)(AX*1)
	VMOVUPS Y5, 160(DI)(AX*1)
	VMOVUPS Y6, 192(DI)(AX*1)
	VMOVUPS Y7, 224(DI)(AX*1)
	MOVQ R10, AX
	JMP  ar2_cols64

ar2_cols32:
	LEAQ 128(AX), R10
	CMPQ R10, R8
	JA   ar2_cols8
	VMOVUPS (DI)(AX*1), Y0
	VMOVUPS 32(DI)(AX*1), Y1
	VMOVUPS 64(DI)(AX*1), Y2
	VMOVUPS 96(DI)(AX*1), Y3
	LEAQ (BX)(AX*1), R11
	MOVQ SI, R12
	MOVQ CX, R13

ar2_rows32:
	VBROADCASTSS (R12), Y8
	VFMADD231PS (R11), Y8, Y0
	VFMADD231PS 32(R11), Y8, Y1
	VFMADD231PS 64(R11), Y8, Y2
	VFMADD231PS 96(R11), Y8, Y3
	ADDQ R8, R11
	ADDQ $4, R12
	DECQ R13
	JNZ  ar2_rows32

	VMOVUPS Y0, (DI)(AX*1)
	VMOVUPS Y1, 32(DI)(AX*1)
	VMOVUPS Y2, 64(DI)(AX*1)
	VMOVUPS Y3, 96(DI)(AX*1)
	MOVQ R10, AX

ar2_cols8:
	CMPQ AX, R8
	JAE  ar2_done
	VMOVUPS (DI)(AX*1), Y0
	LEAQ (BX)(AX*1), R11
	MOVQ SI, R12
	MOVQ CX, R13

ar2_rows8:
	VBROADCASTSS (R12), Y8
	VFMADD231PS (R11), Y8, Y0
	ADDQ R8, R11
	ADDQ $4, R12
	DECQ R13
	JNZ  ar2_rows8

	VMOVUPS Y0, (DI)(AX*1)
	ADDQ $32, AX
	JMP  ar2_cols8

ar2_done:
	VZEROUPPER
	RET

// func logitsQuadF32AVX2(dst, q []float32, rows []float32, scale float32, mx *[4]float32, pf int)
// As logitsQuadGo over float32 rows: n = len(dst)/4 >= 1 rows, d =
// len(q)/4 a multiple of 8; mx is raised to the maxima (NaN skipped).
TEXT ·logitsQuadF32AVX2(SB), NOSPLIT, $0-96
	LOGITSQ2_SETUP(2)
	LOGITSQ2(LDF32, 32)

// func logitsQuadF16AVX2(dst, q []float32, rows []uint16, scale float32, mx *[4]float32, pf int)
TEXT ·logitsQuadF16AVX2(SB), NOSPLIT, $0-96
	LOGITSQ2_SETUP(1)
	LOGITSQ2(LDF16, 16)

// func logitsQuadBF16AVX2(dst, q []float32, rows []uint16, scale float32, mx *[4]float32, pf int)
TEXT ·logitsQuadBF16AVX2(SB), NOSPLIT, $0-96
	LOGITSQ2_SETUP(1)
	LOGITSQ2(LDBF16, 16)

// func accQuadF32AVX2(acc, p []float32, rows []float32, pf int)
// As accQuadGo over float32 rows: d = len(acc)/4 a multiple of 8,
// n = len(p)/4 >= 1.
TEXT ·accQuadF32AVX2(SB), NOSPLIT, $0-80
	ACCQ2_SETUP(2)
	ACCQ2(LDF32, 32)

// func accQuadF16AVX2(acc, p []float32, rows []uint16, pf int)
TEXT ·accQuadF16AVX2(SB), NOSPLIT, $0-80
	ACCQ2_SETUP(1)
	ACCQ2(LDF16, 16)

// func accQuadBF16AVX2(acc, p []float32, rows []uint16, pf int)
TEXT ·accQuadBF16AVX2(SB), NOSPLIT, $0-80
	ACCQ2_SETUP(1)
	ACCQ2(LDBF16, 16)
