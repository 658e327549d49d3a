//go:build amd64 && !noasm

#include "textflag.h"

// AVX-512 kernels (F, with VL) for kernels_amd64.go. Go assembler operand
// order: sources first, destination last; a mask register comes just
// before the destination (merge masking, or zeroing with the .Z suffix).
//
// Logits sum in the order every logit kernel of this package shares, at
// every level: column c of a row goes to lane c%16 of the row's
// accumulator (a zmm here; two ymm in the AVX2 kernels), accumulated by
// FMA column chunk after column chunk, and the 16 lanes are then reduced
// as t8[i] = a[i]+a[i+8], t4[i] = t8[i]+t8[i+4], t2[i] = t4[i]+t4[i+2],
// sum = t2[0]+t2[1]. Weighted row sums add row after row, one FMA a value.
// Two kernels that compute the same thing therefore return the same bits,
// whichever of them runs.

// red16perm puts the sum of accumulator k, which the 16-way reduction
// leaves in lane red16perm[k], into lane k (VPERMPS: dst[k] = src[idx[k]]).
DATA red16perm<>+0(SB)/4, $0
DATA red16perm<>+4(SB)/4, $2
DATA red16perm<>+8(SB)/4, $1
DATA red16perm<>+12(SB)/4, $3
DATA red16perm<>+16(SB)/4, $8
DATA red16perm<>+20(SB)/4, $10
DATA red16perm<>+24(SB)/4, $9
DATA red16perm<>+28(SB)/4, $11
DATA red16perm<>+32(SB)/4, $4
DATA red16perm<>+36(SB)/4, $6
DATA red16perm<>+40(SB)/4, $5
DATA red16perm<>+44(SB)/4, $7
DATA red16perm<>+48(SB)/4, $12
DATA red16perm<>+52(SB)/4, $14
DATA red16perm<>+56(SB)/4, $13
DATA red16perm<>+60(SB)/4, $15
GLOBL red16perm<>(SB), RODATA|NOPTR, $64

// red8perm does the same for the 8-way reduction (lanes 8..15 unused).
DATA red8perm<>+0(SB)/4, $0
DATA red8perm<>+4(SB)/4, $1
DATA red8perm<>+8(SB)/4, $8
DATA red8perm<>+12(SB)/4, $9
DATA red8perm<>+16(SB)/4, $4
DATA red8perm<>+20(SB)/4, $5
DATA red8perm<>+24(SB)/4, $12
DATA red8perm<>+28(SB)/4, $13
DATA red8perm<>+32(SB)/4, $0
DATA red8perm<>+36(SB)/4, $0
DATA red8perm<>+40(SB)/4, $0
DATA red8perm<>+44(SB)/4, $0
DATA red8perm<>+48(SB)/4, $0
DATA red8perm<>+52(SB)/4, $0
DATA red8perm<>+56(SB)/4, $0
DATA red8perm<>+60(SB)/4, $0
GLOBL red8perm<>(SB), RODATA|NOPTR, $64

// The steps of the reduction, on two accumulators za and zb (yb is zb's
// low half), using Z28 and Z29. RED1 (stride 8): za = [t8(za) | t8(zb)].
// RED2 (stride 4) on two RED1 results: za = [t4 t4 t4 t4] of four
// accumulators. RED3 (stride 2) and RED4 (stride 1) go on within each
// 128-bit block.
#define RED1(za, zb, yb) \
	VINSERTF64X4 $1, yb, za, Z28; \
	VSHUFF64X2 $0xEE, zb, za, Z29; \
	VADDPS Z29, Z28, za

#define RED2(za, zb) \
	VSHUFF32X4 $0x88, zb, za, Z28; \
	VSHUFF32X4 $0xDD, zb, za, Z29; \
	VADDPS Z29, Z28, za

#define RED3(za, zb) \
	VSHUFPS $0x44, zb, za, Z28; \
	VSHUFPS $0xEE, zb, za, Z29; \
	VADDPS Z29, Z28, za

#define RED4(za, zb) \
	VSHUFPS $0x88, zb, za, Z28; \
	VSHUFPS $0xDD, zb, za, Z29; \
	VADDPS Z29, Z28, za

// REDUCE16 reduces Z0..Z15 to their 16 sums in Z0, in red16perm's order.
#define REDUCE16 \
	RED1(Z0, Z8, Y8); \
	RED1(Z1, Z9, Y9); \
	RED1(Z2, Z10, Y10); \
	RED1(Z3, Z11, Y11); \
	RED1(Z4, Z12, Y12); \
	RED1(Z5, Z13, Y13); \
	RED1(Z6, Z14, Y14); \
	RED1(Z7, Z15, Y15); \
	RED2(Z0, Z4); \
	RED2(Z1, Z5); \
	RED2(Z2, Z6); \
	RED2(Z3, Z7); \
	RED3(Z0, Z2); \
	RED3(Z1, Z3); \
	RED4(Z0, Z1)

// REDUCE8 reduces Z0..Z7 to their 8 sums in Z0, in red8perm's order.
#define REDUCE8 \
	RED1(Z0, Z4, Y4); \
	RED1(Z1, Z5, Y5); \
	RED1(Z2, Z6, Y6); \
	RED1(Z3, Z7, Y7); \
	RED2(Z0, Z2); \
	RED2(Z1, Z3); \
	RED3(Z0, Z1); \
	RED4(Z0, Z0)

// Loads of 16 columns as float32, from each storage type; the M forms load
// the first 8 only (mask K1 = 0x00ff), zeroing the rest.
#define LD5F32(a, r) VMOVUPS a, r
#define LD5F16(a, r) VCVTPH2PS a, r
#define LD5BF16(a, r) VPMOVZXWD a, r; VPSLLD $16, r, r
#define LD5F32M(a, r) VMOVUPS.Z a, K1, r
#define LD5F16M(a, r) VCVTPH2PS.Z a, K1, r
#define LD5BF16M(a, r) VPMOVZXWD.Z a, K1, r; VPSLLD $16, r, r

// Prefetch steps of the four-row kernels: the lines of the rows at
// distance pf ahead, walked in order by DX (logits: one step of CB bytes a
// 16-column step of one row) or AX (weighted sums: 2 or 4 lines a 16-column
// step of four rows). PREFETCHT2 brings a line into the second-level cache,
// not the first: measured on AMD Zen 4, 16 rows ahead it takes float32
// decode from about 55% to 75-90% of the bandwidth probe, where PREFETCHT0
// and PREFETCHNTA gain nothing (docs/RESULTS.md).
#define PF1DX64 PREFETCHT2 (DX); ADDQ $64, DX
#define PF1DX32 PREFETCHT2 (DX); ADDQ $32, DX
#define PF2AX PREFETCHT2 (AX); PREFETCHT2 64(AX); ADDQ $128, AX
#define PF4AX PREFETCHT2 (AX); PREFETCHT2 64(AX); PREFETCHT2 128(AX); PREFETCHT2 192(AX); ADDQ $256, AX

#define ZERO16 \
	VPXORD Z0, Z0, Z0; \
	VPXORD Z1, Z1, Z1; \
	VPXORD Z2, Z2, Z2; \
	VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; \
	VPXORD Z5, Z5, Z5; \
	VPXORD Z6, Z6, Z6; \
	VPXORD Z7, Z7, Z7; \
	VPXORD Z8, Z8, Z8; \
	VPXORD Z9, Z9, Z9; \
	VPXORD Z10, Z10, Z10; \
	VPXORD Z11, Z11, Z11; \
	VPXORD Z12, Z12, Z12; \
	VPXORD Z13, Z13, Z13; \
	VPXORD Z14, Z14, Z14; \
	VPXORD Z15, Z15, Z15

// LOGITSQ5 is the body of logitsQuad*AVX512: rows of d values (row stride
// R11, 3 strides R13, CB bytes per 16 columns) against the 4 query heads
// at SI (head stride R8, 3 strides R9), into dst (DI, 4 values a row);
// running maxima in Z25 (4 heads x 4). Four rows at a time into Z0..Z15
// (accumulator r*4+h: row r, head h), then one row at a time.
#define LOGITSQ5(LD, LDM, CB, PFSTEP) \
group4: \
	CMPQ CX, $4; \
	JB   tail; \
	ZERO16; \
	MOVQ pf+88(FP), DX; \
	ADDQ BX, DX; \
	LEAQ (BX), R10; \
	MOVQ SI, R12; \
chunkA: \
	CMPQ R12, R14; \
	JAE  halfA; \
	PFSTEP; \
	LD((R10), Z20); \
	VFMADD231PS (R12), Z20, Z0; \
	VFMADD231PS (R12)(R8*1), Z20, Z1; \
	VFMADD231PS (R12)(R8*2), Z20, Z2; \
	VFMADD231PS (R12)(R9*1), Z20, Z3; \
	ADDQ $64, R12; \
	ADDQ $CB, R10; \
	JMP  chunkA; \
halfA: \
	KORTESTW K1, K1; \
	JZ    nextA; \
	LDM((R10), Z20); \
	VFMADD231PS (R12), Z20, K1, Z0; \
	VFMADD231PS (R12)(R8*1), Z20, K1, Z1; \
	VFMADD231PS (R12)(R8*2), Z20, K1, Z2; \
	VFMADD231PS (R12)(R9*1), Z20, K1, Z3; \
nextA: \
	LEAQ (BX)(R11*1), R10; \
	MOVQ SI, R12; \
chunkB: \
	CMPQ R12, R14; \
	JAE  halfB; \
	PFSTEP; \
	LD((R10), Z20); \
	VFMADD231PS (R12), Z20, Z4; \
	VFMADD231PS (R12)(R8*1), Z20, Z5; \
	VFMADD231PS (R12)(R8*2), Z20, Z6; \
	VFMADD231PS (R12)(R9*1), Z20, Z7; \
	ADDQ $64, R12; \
	ADDQ $CB, R10; \
	JMP  chunkB; \
halfB: \
	KORTESTW K1, K1; \
	JZ    nextB; \
	LDM((R10), Z20); \
	VFMADD231PS (R12), Z20, K1, Z4; \
	VFMADD231PS (R12)(R8*1), Z20, K1, Z5; \
	VFMADD231PS (R12)(R8*2), Z20, K1, Z6; \
	VFMADD231PS (R12)(R9*1), Z20, K1, Z7; \
nextB: \
	LEAQ (BX)(R11*2), R10; \
	MOVQ SI, R12; \
chunkC: \
	CMPQ R12, R14; \
	JAE  halfC; \
	PFSTEP; \
	LD((R10), Z20); \
	VFMADD231PS (R12), Z20, Z8; \
	VFMADD231PS (R12)(R8*1), Z20, Z9; \
	VFMADD231PS (R12)(R8*2), Z20, Z10; \
	VFMADD231PS (R12)(R9*1), Z20, Z11; \
	ADDQ $64, R12; \
	ADDQ $CB, R10; \
	JMP  chunkC; \
halfC: \
	KORTESTW K1, K1; \
	JZ    nextC; \
	LDM((R10), Z20); \
	VFMADD231PS (R12), Z20, K1, Z8; \
	VFMADD231PS (R12)(R8*1), Z20, K1, Z9; \
	VFMADD231PS (R12)(R8*2), Z20, K1, Z10; \
	VFMADD231PS (R12)(R9*1), Z20, K1, Z11; \
nextC: \
	LEAQ (BX)(R13*1), R10; \
	MOVQ SI, R12; \
chunkD: \
	CMPQ R12, R14; \
	JAE  halfD; \
	PFSTEP; \
	LD((R10), Z20); \
	VFMADD231PS (R12), Z20, Z12; \
	VFMADD231PS (R12)(R8*1), Z20, Z13; \
	VFMADD231PS (R12)(R8*2), Z20, Z14; \
	VFMADD231PS (R12)(R9*1), Z20, Z15; \
	ADDQ $64, R12; \
	ADDQ $CB, R10; \
	JMP  chunkD; \
halfD: \
	KORTESTW K1, K1; \
	JZ    nextD; \
	LDM((R10), Z20); \
	VFMADD231PS (R12), Z20, K1, Z12; \
	VFMADD231PS (R12)(R8*1), Z20, K1, Z13; \
	VFMADD231PS (R12)(R8*2), Z20, K1, Z14; \
	VFMADD231PS (R12)(R9*1), Z20, K1, Z15; \
nextD: \
red4: \
	REDUCE16; \
	VPERMPS Z0, Z26, Z0; \
	VMULPS Z24, Z0, Z0; \
	VMOVUPS Z0, (DI); \
	VMAXPS Z25, Z0, Z25; \
	ADDQ $64, DI; \
	LEAQ (BX)(R11*4), BX; \
	SUBQ $4, CX; \
	JMP  group4; \
tail: \
	TESTQ CX, CX; \
	JZ    done; \
	ZERO16; \
	MOVQ BX, R10; \
	MOVQ SI, R12; \
chunk1: \
	CMPQ R12, R14; \
	JAE  half1; \
	VMOVUPS (R12), Z16; \
	VMOVUPS (R12)(R8*1), Z17; \
	VMOVUPS (R12)(R8*2), Z18; \
	VMOVUPS (R12)(R9*1), Z19; \
	LD((R10), Z20); \
	VFMADD231PS Z16, Z20, Z0; \
	VFMADD231PS Z17, Z20, Z1; \
	VFMADD231PS Z18, Z20, Z2; \
	VFMADD231PS Z19, Z20, Z3; \
	ADDQ $64, R12; \
	ADDQ $CB, R10; \
	JMP  chunk1; \
half1: \
	KORTESTW K1, K1; \
	JZ    red1; \
	VMOVUPS.Z (R12), K1, Z16; \
	VMOVUPS.Z (R12)(R8*1), K1, Z17; \
	VMOVUPS.Z (R12)(R8*2), K1, Z18; \
	VMOVUPS.Z (R12)(R9*1), K1, Z19; \
	LDM((R10), Z20); \
	VFMADD231PS Z16, Z20, K1, Z0; \
	VFMADD231PS Z17, Z20, K1, Z1; \
	VFMADD231PS Z18, Z20, K1, Z2; \
	VFMADD231PS Z19, Z20, K1, Z3; \
red1: \
	REDUCE16; \
	VPERMPS Z0, Z26, Z0; \
	VMULPS Z24, Z0, Z0; \
	VMOVUPS X0, (DI); \
	VMAXPS Z25, Z0, K2, Z25; \
	ADDQ $16, DI; \
	ADDQ R11, BX; \
	DECQ CX; \
	JMP  tail; \
done: \
	VEXTRACTF64X4 $1, Z25, Y27; \
	VMAXPS Y25, Y27, Y25; \
	VEXTRACTF32X4 $1, Y25, X27; \
	VMAXPS X25, X27, X25; \
	VMOVUPS X25, (AX); \
	VZEROUPPER; \
	RET

// LOGITSQ5_SETUP loads the arguments of logitsQuad*AVX512; SH is log2 of
// the stored value's size (2 for float32, 1 for 16-bit).
#define LOGITSQ5_SETUP(SH) \
	MOVQ dst_base+0(FP), DI; \
	MOVQ dst_len+8(FP), CX; \
	MOVQ q_base+24(FP), SI; \
	MOVQ q_len+32(FP), DX; \
	MOVQ rows_base+48(FP), BX; \
	MOVQ mx+80(FP), AX; \
	SHRQ $2, CX; \
	SHRQ $2, DX; \
	VBROADCASTSS scale+72(FP), Z24; \
	VBROADCASTF32X4 (AX), Z25; \
	VMOVDQU32 red16perm<>(SB), Z26; \
	MOVQ DX, R8; \
	SHRQ $3, R8; \
	ANDQ $1, R8; \
	NEGQ R8; \
	ANDQ $0xff, R8; \
	KMOVW R8, K1; \
	MOVL $0x0f, R8; \
	KMOVW R8, K2; \
	MOVQ DX, R8; \
	SHLQ $2, R8; \
	LEAQ (R8)(R8*2), R9; \
	MOVQ DX, R11; \
	SHLQ $SH, R11; \
	LEAQ (R11)(R11*2), R13; \
	MOVQ DX, R14; \
	ANDQ $-16, R14; \
	LEAQ (SI)(R14*4), R14

// ACCQ5 is the body of accQuad*AVX512: acc (DI, 4 heads of d values, head
// stride R8, 3 strides R9) += the rows (BX, stride R11, 3 strides R13, CB
// bytes per 16 columns) weighted by p (SI, 4 values a row). Row after row:
// four rows at a time, their 16 weights broadcast in Z16..Z31 (row r head
// h in Z16+4r+h), each 16-column chunk of the 4 heads' accumulators loaded,
// updated by the four rows in order and stored; then one row at a time.
// R14 is the end of head 0's whole chunks.
#define ACCQ5(LD, LDM, CB, PFSTEP) \
group4: \
	CMPQ CX, $4; \
	JB   tail; \
	VBROADCASTSS (SI), Z16; \
	VBROADCASTSS 4(SI), Z17; \
	VBROADCASTSS 8(SI), Z18; \
	VBROADCASTSS 12(SI), Z19; \
	VBROADCASTSS 16(SI), Z20; \
	VBROADCASTSS 20(SI), Z21; \
	VBROADCASTSS 24(SI), Z22; \
	VBROADCASTSS 28(SI), Z23; \
	VBROADCASTSS 32(SI), Z24; \
	VBROADCASTSS 36(SI), Z25; \
	VBROADCASTSS 40(SI), Z26; \
	VBROADCASTSS 44(SI), Z27; \
	VBROADCASTSS 48(SI), Z28; \
	VBROADCASTSS 52(SI), Z29; \
	VBROADCASTSS 56(SI), Z30; \
	VBROADCASTSS 60(SI), Z31; \
	MOVQ DI, R12; \
	MOVQ BX, R10; \
	MOVQ pf+72(FP), AX; \
	ADDQ BX, AX; \
chunk4: \
	CMPQ R12, R14; \
	JAE  half4; \
	PFSTEP; \
	LD((R10), Z0); \
	LD((R10)(R11*1), Z1); \
	LD((R10)(R11*2), Z2); \
	LD((R10)(R13*1), Z3); \
	VMOVUPS (R12), Z4; \
	VMOVUPS (R12)(R8*1), Z5; \
	VMOVUPS (R12)(R8*2), Z6; \
	VMOVUPS (R12)(R9*1), Z7; \
	VFMADD231PS Z16, Z0, Z4; \
	VFMADD231PS Z17, Z0, Z5; \
	VFMADD231PS Z18, Z0, Z6; \
	VFMADD231PS Z19, Z0, Z7; \
	VFMADD231PS Z20, Z1, Z4; \
	VFMADD231PS Z21, Z1, Z5; \
	VFMADD231PS Z22, Z1, Z6; \
	VFMADD231PS Z23, Z1, Z7; \
	VFMADD231PS Z24, Z2, Z4; \
	VFMADD231PS Z25, Z2, Z5; \
	VFMADD231PS Z26, Z2, Z6; \
	VFMADD231PS Z27, Z2, Z7; \
	VFMADD231PS Z28, Z3, Z4; \
	VFMADD231PS Z29, Z3, Z5; \
	VFMADD231PS Z30, Z3, Z6; \
	VFMADD231PS Z31, Z3, Z7; \
	VMOVUPS Z4, (R12); \
	VMOVUPS Z5, (R12)(R8*1); \
	VMOVUPS Z6, (R12)(R8*2); \
	VMOVUPS Z7, (R12)(R9*1); \
	ADDQ $64, R12; \
	ADDQ $CB, R10; \
	JMP  chunk4; \
half4: \
	KORTESTW K1, K1; \
	JZ    next4; \
	LDM((R10), Z0); \
	LDM((R10)(R11*1), Z1); \
	LDM((R10)(R11*2), Z2); \
	LDM((R10)(R13*1), Z3); \
	VMOVUPS.Z (R12), K1, Z4; \
	VMOVUPS.Z (R12)(R8*1), K1, Z5; \
	VMOVUPS.Z (R12)(R8*2), K1, Z6; \
	VMOVUPS.Z (R12)(R9*1), K1, Z7; \
	VFMADD231PS Z16, Z0, Z4; \
	VFMADD231PS Z17, Z0, Z5; \
	VFMADD231PS Z18, Z0, Z6; \
	VFMADD231PS Z19, Z0, Z7; \
	VFMADD231PS Z20, Z1, Z4; \
	VFMADD231PS Z21, Z1, Z5; \
	VFMADD231PS Z22, Z1, Z6; \
	VFMADD231PS Z23, Z1, Z7; \
	VFMADD231PS Z24, Z2, Z4; \
	VFMADD231PS Z25, Z2, Z5; \
	VFMADD231PS Z26, Z2, Z6; \
	VFMADD231PS Z27, Z2, Z7; \
	VFMADD231PS Z28, Z3, Z4; \
	VFMADD231PS Z29, Z3, Z5; \
	VFMADD231PS Z30, Z3, Z6; \
	VFMADD231PS Z31, Z3, Z7; \
	VMOVUPS Z4, K1, (R12); \
	VMOVUPS Z5, K1, (R12)(R8*1); \
	VMOVUPS Z6, K1, (R12)(R8*2); \
	VMOVUPS Z7, K1, (R12)(R9*1); \
next4: \
	ADDQ $64, SI; \
	LEAQ (BX)(R11*4), BX; \
	SUBQ $4, CX; \
	JMP  group4; \
tail: \
	TESTQ CX, CX; \
	JZ    done; \
	VBROADCASTSS (SI), Z16; \
	VBROADCASTSS 4(SI), Z17; \
	VBROADCASTSS 8(SI), Z18; \
	VBROADCASTSS 12(SI), Z19; \
	MOVQ DI, R12; \
	MOVQ BX, R10; \
chunk1: \
	CMPQ R12, R14; \
	JAE  half1; \
	LD((R10), Z0); \
	VMOVUPS (R12), Z4; \
	VMOVUPS (R12)(R8*1), Z5; \
	VMOVUPS (R12)(R8*2), Z6; \
	VMOVUPS (R12)(R9*1), Z7; \
	VFMADD231PS Z16, Z0, Z4; \
	VFMADD231PS Z17, Z0, Z5; \
	VFMADD231PS Z18, Z0, Z6; \
	VFMADD231PS Z19, Z0, Z7; \
	VMOVUPS Z4, (R12); \
	VMOVUPS Z5, (R12)(R8*1); \
	VMOVUPS Z6, (R12)(R8*2); \
	VMOVUPS Z7, (R12)(R9*1); \
	ADDQ $64, R12; \
	ADDQ $CB, R10; \
	JMP  chunk1; \
half1: \
	KORTESTW K1, K1; \
	JZ    next1; \
	LDM((R10), Z0); \
	VMOVUPS.Z (R12), K1, Z4; \
	VMOVUPS.Z (R12)(R8*1), K1, Z5; \
	VMOVUPS.Z (R12)(R8*2), K1, Z6; \
	VMOVUPS.Z (R12)(R9*1), K1, Z7; \
	VFMADD231PS Z16, Z0, Z4; \
	VFMADD231PS Z17, Z0, Z5; \
	VFMADD231PS Z18, Z0, Z6; \
	VFMADD231PS Z19, Z0, Z7; \
	VMOVUPS Z4, K1, (R12); \
	VMOVUPS Z5, K1, (R12)(R8*1); \
	VMOVUPS Z6, K1, (R12)(R8*2); \
	VMOVUPS Z7, K1, (R12)(R9*1); \
next1: \
	ADDQ $16, SI; \
	ADDQ R11, BX; \
	DECQ CX; \
	JMP  tail; \
done: \
	VZEROUPPER; \
	RET

#define ACCQ5_SETUP(SH) \
	MOVQ acc_base+0(FP), DI; \
	MOVQ acc_len+8(FP), DX; \
	MOVQ p_base+24(FP), SI; \
	MOVQ p_len+32(FP), CX; \
	MOVQ rows_base+48(FP), BX; \
	SHRQ $2, CX; \
	SHRQ $2, DX; \
	MOVQ DX, AX; \
	SHRQ $3, AX; \
	ANDQ $1, AX; \
	NEGQ AX; \
	ANDQ $0xff, AX; \
	KMOVW AX, K1; \
	MOVQ DX, R8; \
	SHLQ $2, R8; \
	LEAQ (R8)(R8*2), R9; \
	MOVQ DX, R11; \
	SHLQ $SH, R11; \
	LEAQ (R11)(R11*2), R13; \
	MOVQ DX, R14; \
	ANDQ $-16, R14; \
	LEAQ (DI)(R14*4), R14

// func dotsAVX512(dst, q, rows []float32, scale float32)
// dst[j] = scale * q . rows[j*d:(j+1)*d], d = len(q) a multiple of 8,
// len(dst) >= 1; eight rows at a time, then one.
TEXT ·dotsAVX512(SB), NOSPLIT, $0-76
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ q_base+24(FP), SI
	MOVQ q_len+32(FP), DX
	MOVQ rows_base+48(FP), BX
	VBROADCASTSS scale+72(FP), Z24
	VMOVDQU32 red8perm<>(SB), Z26
	MOVL $0xff, AX
	KMOVW AX, K1
	MOVQ DX, R8
	SHLQ $2, R8             // row stride in bytes
	LEAQ (R8)(R8*2), R9     // 3 strides
	MOVQ DX, R14
	ANDQ $-16, R14
	LEAQ (SI)(R14*4), R14   // end of q's whole 16-column chunks

d5_block8:
	CMPQ CX, $8
	JB   d5_tail
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	MOVQ BX, R10            // rows 0..3
	LEAQ (BX)(R8*4), R11    // rows 4..7
	MOVQ SI, R12

d5_inner8:
	CMPQ R12, R14
	JAE  d5_half8
	VMOVUPS (R12), Z16
	VFMADD231PS (R10), Z16, Z0
	VFMADD231PS (R10)(R8*1), Z16, Z1
	VFMADD231PS (R10)(R8*2), Z16, Z2
	VFMADD231PS (R10)(R9*1), Z16, Z3
	VFMADD231PS (R11), Z16, Z4
	VFMADD231PS (R11)(R8*1), Z16, Z5
	VFMADD231PS (R11)(R8*2), Z16, Z6
	VFMADD231PS (R11)(R9*1), Z16, Z7
	ADDQ $64, R10
	ADDQ $64, R11
	ADDQ $64, R12
	JMP  d5_inner8

d5_half8:
	TESTQ $8, DX
	JZ    d5_red8
	VMOVUPS.Z (R12), K1, Z16
	VMOVUPS.Z (R10), K1, Z17
	VFMADD231PS Z17, Z16, K1, Z0
	VMOVUPS.Z (R10)(R8*1), K1, Z17
	VFMADD231PS Z17, Z16, K1, Z1
	VMOVUPS.Z (R10)(R8*2), K1, Z17
	VFMADD231PS Z17, Z16, K1, Z2
	VMOVUPS.Z (R10)(R9*1), K1, Z17
	VFMADD231PS Z17, Z16, K1, Z3
	VMOVUPS.Z (R11), K1, Z17
	VFMADD231PS Z17, Z16, K1, Z4
	VMOVUPS.Z (R11)(R8*1), K1, Z17
	VFMADD231PS Z17, Z16, K1, Z5
	VMOVUPS.Z (R11)(R8*2), K1, Z17
	VFMADD231PS Z17, Z16, K1, Z6
	VMOVUPS.Z (R11)(R9*1), K1, Z17
	VFMADD231PS Z17, Z16, K1, Z7

d5_red8:
	REDUCE8
	VPERMPS Z0, Z26, Z0
	VMULPS Z24, Z0, Z0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	LEAQ (BX)(R8*8), BX
	SUBQ $8, CX
	JMP  d5_block8

d5_tail:
	TESTQ CX, CX
	JZ    d5_done
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	MOVQ BX, R10
	MOVQ SI, R12

d5_inner1:
	CMPQ R12, R14
	JAE  d5_half1
	VMOVUPS (R12), Z16
	VFMADD231PS (R10), Z16, Z0
	ADDQ $64, R10
	ADDQ $64, R12
	JMP  d5_inner1

d5_half1:
	TESTQ $8, DX
	JZ    d5_red1
	VMOVUPS.Z (R12), K1, Z16
	VMOVUPS.Z (R10), K1, Z17
	VFMADD231PS Z17, Z16, K1, Z0

d5_red1:
	REDUCE8
	VPERMPS Z0, Z26, Z0
	VMULSS X24, X0, X0
	VMOVSS X0, (DI)
	ADDQ $4, DI
	ADDQ R8, BX
	DECQ CX
	JMP  d5_tail

d5_done:
	VZEROUPPER
	RET

// func logitsQuadF32AVX512(dst, q []float32, rows []float32, scale float32, mx *[4]float32, pf int)
// As logitsQuadGo over float32 rows: n = len(dst)/4 >= 1 rows, d =
// len(q)/4 a multiple of 8; mx is raised to the maxima (NaN skipped).
TEXT ·logitsQuadF32AVX512(SB), NOSPLIT, $0-96
	LOGITSQ5_SETUP(2)
	LOGITSQ5(LD5F32, LD5F32M, 64, PF1DX64)

// func logitsQuadF16AVX512(dst, q []float32, rows []uint16, scale float32, mx *[4]float32, pf int)
TEXT ·logitsQuadF16AVX512(SB), NOSPLIT, $0-96
	LOGITSQ5_SETUP(1)
	LOGITSQ5(LD5F16, LD5F16M, 32, PF1DX32)

// func logitsQuadBF16AVX512(dst, q []float32, rows []uint16, scale float32, mx *[4]float32, pf int)
TEXT ·logitsQuadBF16AVX512(SB), NOSPLIT, $0-96
	LOGITSQ5_SETUP(1)
	LOGITSQ5(LD5BF16, LD5BF16M, 32, PF1DX32)

// func accQuadF32AVX512(acc, p []float32, rows []float32, pf int)
// As accQuadGo over float32 rows: d = len(acc)/4 a multiple of 8,
// n = len(p)/4 >= 1.
TEXT ·accQuadF32AVX512(SB), NOSPLIT, $0-80
	ACCQ5_SETUP(2)
	ACCQ5(LD5F32, LD5F32M, 64, PF4AX)

// func accQuadF16AVX512(acc, p []float32, rows []uint16, pf int)
TEXT ·accQuadF16AVX512(SB), NOSPLIT, $0-80
	ACCQ5_SETUP(1)
	ACCQ5(LD5F16, LD5F16M, 32, PF2AX)

// func accQuadBF16AVX512(acc, p []float32, rows []uint16, pf int)
TEXT ·accQuadBF16AVX512(SB), NOSPLIT, $0-80
	ACCQ5_SETUP(1)
	ACCQ5(LD5BF16, LD5BF16M, 32, PF2AX)

// func accRowsAVX512(acc, p, rows []float32)
// acc += sum_j p[j] * rows[j*d:(j+1)*d], row after row, d = len(acc) a
// multiple of 8, len(p) >= 1: strips of 128, 64 and 16 columns held in
// registers while the rows go by, then 8 masked.
TEXT ·accRowsAVX512(SB), NOSPLIT, $0-72
	MOVQ acc_base+0(FP), DI
	MOVQ acc_len+8(FP), DX
	MOVQ p_base+24(FP), SI
	MOVQ p_len+32(FP), CX
	MOVQ rows_base+48(FP), BX
	MOVL $0xff, AX
	KMOVW AX, K1
	MOVQ DX, R8
	SHLQ $2, R8             // row stride in bytes
	XORQ AX, AX             // column offset in bytes

ar5_cols128:
	LEAQ 512(AX), R10
	CMPQ R10, R8
	JA   ar5_cols64
	VMOVUPS (DI)(AX*1), Z0
	VMOVUPS 64(DI)(AX*1), Z1
	VMOVUPS 128(DI)(AX*1), Z2
	VMOVUPS 192(DI)(AX*1), Z3
	VMOVUPS 256(DI)(AX*1), Z4
	VMOVUPS 320(DI)(AX*1), Z5
	VMOVUPS 384(DI)(AX*1), Z6
	VMOVUPS 448(DI)(AX*1), Z7
	LEAQ (BX)(AX*1), R11
	MOVQ SI, R12
	MOVQ CX, R13

ar5_rows128:
	VBROADCASTSS (R12), Z8
	VFMADD231PS (R11), Z8, Z0
	VFMADD231PS 64(R11), Z8, Z1
	VFMADD231PS 128(R11), Z8, Z2
	VFMADD231PS 192(R11), Z8, Z3
	VFMADD231PS 256(R11), Z8, Z4
	VFMADD231PS 320(R11), Z8, Z5
	VFMADD231PS 384(R11), Z8, Z6
	VFMADD231PS 448(R11), Z8, Z7
	ADDQ R8, R11
	ADDQ $4, R12
	DECQ R13
	JNZ  ar5_rows128

	VMOVUPS Z0, (DI)(AX*1)
	VMOVUPS Z1, 64(DI)(AX*1)
	VMOVUPS Z2, 128(DI)(AX*1)
	VMOVUPS Z3, 192(DI)(AX*1)
	VMOVUPS Z4, 256(DI)(AX*1)
	VMOVUPS Z5, 320(DI)(AX*1)
	VMOVUPS Z6, 384(DI)(AX*1)
	VMOVUPS Z7, 448(DI)(AX*1)
	MOVQ R10, AX
	JMP  ar5_cols128

ar5_cols64:
	LEAQ 256(AX), R10
	CMPQ R10, R8
	JA   ar5_cols16
	VMOVUPS (DI)(AX*1), Z0
	VMOVUPS 64(DI)(AX*1), Z1
	VMOVUPS 128(DI)(AX*1), Z2
	VMOVUPS 192(DI)(AX*1), Z3
	LEAQ (BX)(AX*1), R11
	MOVQ SI, R12
	MOVQ CX, R13

ar5_rows64:
	VBROADCASTSS (R12), Z8
	VFMADD231PS (R11), Z8, Z0
	VFMADD231PS 64(R11), Z8, Z1
	VFMADD231PS 128(R11), Z8, Z2
	VFMADD231PS 192(R11), Z8, Z3
	ADDQ R8, R11
	ADDQ $4, R12
	DECQ R13
	JNZ  ar5_rows64

	VMOVUPS Z0, (DI)(AX*1)
	VMOVUPS Z1, 64(DI)(AX*1)
	VMOVUPS Z2, 128(DI)(AX*1)
	VMOVUPS Z3, 192(DI)(AX*1)
	MOVQ R10, AX

ar5_cols16:
	LEAQ 64(AX), R10
	CMPQ R10, R8
	JA   ar5_half
	VMOVUPS (DI)(AX*1), Z0
	LEAQ (BX)(AX*1), R11
	MOVQ SI, R12
	MOVQ CX, R13

ar5_rows16:
	VBROADCASTSS (R12), Z8
	VFMADD231PS (R11), Z8, Z0
	ADDQ R8, R11
	ADDQ $4, R12
	DECQ R13
	JNZ  ar5_rows16

	VMOVUPS Z0, (DI)(AX*1)
	MOVQ R10, AX
	JMP  ar5_cols16

ar5_half:
	CMPQ AX, R8
	JAE  ar5_done
	VMOVUPS.Z (DI)(AX*1), K1, Z0
	LEAQ (BX)(AX*1), R11
	MOVQ SI, R12
	MOVQ CX, R13

ar5_rows8:
	VBROADCASTSS (R12), Z8
	VMOVUPS.Z (R11), K1, Z9
	VFMADD231PS Z9, Z8, Z0
	ADDQ R8, R11
	ADDQ $4, R12
	DECQ R13
	JNZ  ar5_rows8

	VMOVUPS Z0, K1, (DI)(AX*1)

ar5_done:
	VZEROUPPER
	RET

