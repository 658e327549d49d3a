//go:build amd64 && !noasm

#include "textflag.h"

// Kernels for kernels_amd64.go. Go assembler operand order: sources first,
// destination last (VFMADD231PS a, b, c computes c += b*a; VSUBPS a, b, c
// computes c = b - a).

// Constants of the vector exp (the polynomial and range reduction of expf in
// kernels.go), each repeated 8 times so that a ymm operand can read it from
// memory; the AVX-512 kernel broadcasts the first copy.
DATA expConst<>+0(SB)/8, $0x3ab743ce3ab743ce
DATA expConst<>+8(SB)/8, $0x3ab743ce3ab743ce
DATA expConst<>+16(SB)/8, $0x3ab743ce3ab743ce
DATA expConst<>+24(SB)/8, $0x3ab743ce3ab743ce
DATA expConst<>+32(SB)/8, $0x3c0889083c088908
DATA expConst<>+40(SB)/8, $0x3c0889083c088908
DATA expConst<>+48(SB)/8, $0x3c0889083c088908
DATA expConst<>+56(SB)/8, $0x3c0889083c088908
DATA expConst<>+64(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expConst<>+72(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expConst<>+80(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expConst<>+88(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expConst<>+96(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expConst<>+104(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expConst<>+112(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expConst<>+120(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expConst<>+128(SB)/8, $0x3f0000003f000000
DATA expConst<>+136(SB)/8, $0x3f0000003f000000
DATA expConst<>+144(SB)/8, $0x3f0000003f000000
DATA expConst<>+152(SB)/8, $0x3f0000003f000000
DATA expConst<>+160(SB)/8, $0x3950696739506967
DATA expConst<>+168(SB)/8, $0x3950696739506967
DATA expConst<>+176(SB)/8, $0x3950696739506967
DATA expConst<>+184(SB)/8, $0x3950696739506967
DATA expConst<>+192(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expConst<>+200(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expConst<>+208(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expConst<>+216(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expConst<>+224(SB)/8, $0x3f3180003f318000
DATA expConst<>+232(SB)/8, $0x3f3180003f318000
DATA expConst<>+240(SB)/8, $0x3f3180003f318000
DATA expConst<>+248(SB)/8, $0x3f3180003f318000
DATA expConst<>+256(SB)/8, $0xb95e8083b95e8083
DATA expConst<>+264(SB)/8, $0xb95e8083b95e8083
DATA expConst<>+272(SB)/8, $0xb95e8083b95e8083
DATA expConst<>+280(SB)/8, $0xb95e8083b95e8083
DATA expConst<>+288(SB)/8, $0x4b4000004b400000
DATA expConst<>+296(SB)/8, $0x4b4000004b400000
DATA expConst<>+304(SB)/8, $0x4b4000004b400000
DATA expConst<>+312(SB)/8, $0x4b4000004b400000
DATA expConst<>+320(SB)/8, $0xc2aeac50c2aeac50
DATA expConst<>+328(SB)/8, $0xc2aeac50c2aeac50
DATA expConst<>+336(SB)/8, $0xc2aeac50c2aeac50
DATA expConst<>+344(SB)/8, $0xc2aeac50c2aeac50
DATA expConst<>+352(SB)/8, $0x42b0000042b00000
DATA expConst<>+360(SB)/8, $0x42b0000042b00000
DATA expConst<>+368(SB)/8, $0x42b0000042b00000
DATA expConst<>+376(SB)/8, $0x42b0000042b00000
DATA expConst<>+384(SB)/8, $0x3f8000003f800000
DATA expConst<>+392(SB)/8, $0x3f8000003f800000
DATA expConst<>+400(SB)/8, $0x3f8000003f800000
DATA expConst<>+408(SB)/8, $0x3f8000003f800000
GLOBL expConst<>(SB), RODATA|NOPTR, $416

#define EXPC(i) expConst<>+(i*32)(SB)

// HADD8 reduces Y0..Y7 to Y0 = [sum(Y0) ... sum(Y7)], using Y1, Y2.
#define HADD8 \
	VHADDPS Y1, Y0, Y0; \
	VHADDPS Y3, Y2, Y2; \
	VHADDPS Y5, Y4, Y4; \
	VHADDPS Y7, Y6, Y6; \
	VHADDPS Y2, Y0, Y0; \
	VHADDPS Y6, Y4, Y4; \
	VPERM2F128 $0x20, Y4, Y0, Y1; \
	VPERM2F128 $0x31, Y4, Y0, Y2; \
	VADDPS Y2, Y1, Y0

// HSUM_X0 leaves the sum of the 4 lanes of X0 in its lane 0, using X1.
#define HSUM_X0 \
	VMOVHLPS X0, X0, X1; \
	VADDPS X1, X0, X0; \
	VMOVSHDUP X0, X1; \
	VADDSS X1, X0, X0

// func dotsAVX2(dst, q, rows []float32, scale float32)
// dst[j] = scale * dot(q, rows[j*d:(j+1)*d]), d = len(q) a multiple of 8.
TEXT ·dotsAVX2(SB), NOSPLIT, $0-76
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ q_base+24(FP), SI
	MOVQ q_len+32(FP), DX
	MOVQ rows_base+48(FP), BX
	VBROADCASTSS scale+72(FP), Y15
	MOVQ DX, R8
	SHLQ $2, R8             // R8 = row stride in bytes
	LEAQ (R8)(R8*2), R9     // R9 = 3 strides

dots2_block8:
	CMPQ CX, $8
	JB   dots2_tail
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ BX, R10            // rows 0..3
	LEAQ (BX)(R8*4), R11    // rows 4..7
	MOVQ SI, R12            // q
	LEAQ (BX)(R8*1), R13    // end of row 0

dots2_inner8:
	VMOVUPS (R12), Y8
	VFMADD231PS (R10), Y8, Y0
	VFMADD231PS (R10)(R8*1), Y8, Y1
	VFMADD231PS (R10)(R8*2), Y8, Y2
	VFMADD231PS (R10)(R9*1), Y8, Y3
	VFMADD231PS (R11), Y8, Y4
	VFMADD231PS (R11)(R8*1), Y8, Y5
	VFMADD231PS (R11)(R8*2), Y8, Y6
	VFMADD231PS (R11)(R9*1), Y8, Y7
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $32, R12
	CMPQ R10, R13
	JB   dots2_inner8

	HADD8
	VMULPS Y15, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	LEAQ (BX)(R8*8), BX
	SUBQ $8, CX
	JMP  dots2_block8

dots2_tail:
	TESTQ CX, CX
	JZ    dots2_done
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	MOVQ BX, R10
	MOVQ SI, R12
	LEAQ (BX)(R8*1), R13

dots2_inner1:
	VMOVUPS (R12), Y8
	VFMADD231PS (R10), Y8, Y0
	ADDQ $32, R10
	ADDQ $32, R12
	CMPQ R10, R13
	JB   dots2_inner1

	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	HSUM_X0
	VMULSS X15, X0, X0
	VMOVSS X0, (DI)
	ADDQ $4, DI
	ADDQ R8, BX
	DECQ CX
	JMP  dots2_tail

dots2_done:
	VZEROUPPER
	RET

// func dotsAVX512(dst, q, rows []float32, scale float32)
// As dotsAVX2 with d a multiple of 16.
TEXT ·dotsAVX512(SB), NOSPLIT, $0-76
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ q_base+24(FP), SI
	MOVQ q_len+32(FP), DX
	MOVQ rows_base+48(FP), BX
	VBROADCASTSS scale+72(FP), Y15
	MOVQ DX, R8
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9

dots5_block8:
	CMPQ CX, $8
	JB   dots5_tail
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	MOVQ BX, R10
	LEAQ (BX)(R8*4), R11
	MOVQ SI, R12
	LEAQ (BX)(R8*1), R13

dots5_inner8:
	VMOVUPS (R12), Z8
	VFMADD231PS (R10), Z8, Z0
	VFMADD231PS (R10)(R8*1), Z8, Z1
	VFMADD231PS (R10)(R8*2), Z8, Z2
	VFMADD231PS (R10)(R9*1), Z8, Z3
	VFMADD231PS (R11), Z8, Z4
	VFMADD231PS (R11)(R8*1), Z8, Z5
	VFMADD231PS (R11)(R8*2), Z8, Z6
	VFMADD231PS (R11)(R9*1), Z8, Z7
	ADDQ $64, R10
	ADDQ $64, R11
	ADDQ $64, R12
	CMPQ R10, R13
	JB   dots5_inner8

	// Fold each zmm to a ymm: pairs (Z0, Z4), (Z1, Z5), ... share one
	// shuffle: Z9 = [lo(Z0) lo(Z4)] + [hi(Z0) hi(Z4)].
	VINSERTF64X4 $1, Y4, Z0, Z9
	VSHUFF64X2 $0xEE, Z4, Z0, Z10
	VADDPS Z10, Z9, Z0
	VINSERTF64X4 $1, Y5, Z1, Z9
	VSHUFF64X2 $0xEE, Z5, Z1, Z10
	VADDPS Z10, Z9, Z1
	VINSERTF64X4 $1, Y6, Z2, Z9
	VSHUFF64X2 $0xEE, Z6, Z2, Z10
	VADDPS Z10, Z9, Z2
	VINSERTF64X4 $1, Y7, Z3, Z9
	VSHUFF64X2 $0xEE, Z7, Z3, Z10
	VADDPS Z10, Z9, Z3
	VEXTRACTF64X4 $1, Z0, Y4
	VEXTRACTF64X4 $1, Z1, Y5
	VEXTRACTF64X4 $1, Z2, Y6
	VEXTRACTF64X4 $1, Z3, Y7
	HADD8
	VMULPS Y15, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	LEAQ (BX)(R8*8), BX
	SUBQ $8, CX
	JMP  dots5_block8

dots5_tail:
	TESTQ CX, CX
	JZ    dots5_done
	VPXORD Z0, Z0, Z0
	MOVQ BX, R10
	MOVQ SI, R12
	LEAQ (BX)(R8*1), R13

dots5_inner1:
	VMOVUPS (R12), Z8
	VFMADD231PS (R10), Z8, Z0
	ADDQ $64, R10
	ADDQ $64, R12
	CMPQ R10, R13
	JB   dots5_inner1

	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	HSUM_X0
	VMULSS X15, X0, X0
	VMOVSS X0, (DI)
	ADDQ $4, DI
	ADDQ R8, BX
	DECQ CX
	JMP  dots5_tail

dots5_done:
	VZEROUPPER
	RET

// func maxOfAVX2(x []float32) float32
// len(x) a positive multiple of 8; NaN values are skipped.
TEXT ·maxOfAVX2(SB), NOSPLIT, $0-28
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVL $0xff800000, AX
	VMOVD AX, X0
	VBROADCASTSS X0, Y0
	VMOVAPS Y0, Y1
	LEAQ (SI)(CX*4), DX

max2_loop16:
	LEAQ 64(SI), R8
	CMPQ R8, DX
	JA   max2_loop8
	VMOVUPS (SI), Y2
	VMOVUPS 32(SI), Y3
	VMAXPS Y0, Y2, Y0       // Y0 = max(Y2, Y0); Y0 where Y2 is NaN
	VMAXPS Y1, Y3, Y1
	MOVQ R8, SI
	JMP  max2_loop16

max2_loop8:
	CMPQ SI, DX
	JAE  max2_reduce
	VMOVUPS (SI), Y2
	VMAXPS Y0, Y2, Y0
	ADDQ $32, SI
	JMP  max2_loop8

max2_reduce:
	VMAXPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VMOVHLPS X0, X0, X1
	VMAXPS X1, X0, X0
	VMOVSHDUP X0, X1
	VMAXSS X1, X0, X0
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// EXP8 replaces Y0 (x - m, where Y14 = m) by exp(Y0) and adds it to Y15:
// clamp x to [lo, hi] (NaN stays NaN); t = x*log2e + round holds n =
// round(x/ln 2) in its low bits; r = x - n*c1 - n*c2; y = 1 + r + r*r*P(r);
// scale by 2^n built from n << 23 plus the bits of 1.0; zero where x < lo.
// Inputs below expLoLimit give 0, NaN stays NaN. Uses Y1..Y5 and the
// constants Y6 one, Y7 p0, Y8 c2, Y9 c1, Y10 log2e, Y11 round, Y12 hi, Y13 lo.
#define EXP8 \
	VMAXPS Y0, Y13, Y1; \
	VMINPS Y1, Y12, Y1; \
	VMOVAPS Y11, Y2; \
	VFMADD231PS Y10, Y1, Y2; \
	VSUBPS Y11, Y2, Y3; \
	VFNMADD231PS Y9, Y3, Y1; \
	VFNMADD231PS Y8, Y3, Y1; \
	VMULPS Y1, Y1, Y4; \
	VMOVAPS Y7, Y5; \
	VFMADD213PS EXPC(0), Y1, Y5; \
	VFMADD213PS EXPC(1), Y1, Y5; \
	VFMADD213PS EXPC(2), Y1, Y5; \
	VFMADD213PS EXPC(3), Y1, Y5; \
	VFMADD213PS EXPC(4), Y1, Y5; \
	VFMADD213PS Y1, Y4, Y5; \
	VADDPS Y6, Y5, Y5; \
	VPSLLD $23, Y2, Y2; \
	VPADDD Y6, Y2, Y2; \
	VMULPS Y2, Y5, Y5; \
	VCMPPS $1, Y13, Y0, Y3; \
	VANDNPS Y5, Y3, Y0; \
	VADDPS Y0, Y15, Y15

// func expShiftAVX2(x []float32, m float32) float32
// x[i] = exp(x[i]-m), returns the sum; len(x) a positive multiple of 8,
// x[i]-m <= 88.
TEXT ·expShiftAVX2(SB), NOSPLIT, $0-36
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	VBROADCASTSS m+24(FP), Y14
	VXORPS Y15, Y15, Y15
	VMOVUPS EXPC(12), Y6
	VMOVUPS EXPC(5), Y7
	VMOVUPS EXPC(8), Y8
	VMOVUPS EXPC(7), Y9
	VMOVUPS EXPC(6), Y10
	VMOVUPS EXPC(9), Y11
	VMOVUPS EXPC(11), Y12
	VMOVUPS EXPC(10), Y13
	LEAQ (SI)(CX*4), DX

exp2_loop:
	VMOVUPS (SI), Y0
	VSUBPS Y14, Y0, Y0
	EXP8
	VMOVUPS Y0, (SI)
	ADDQ $32, SI
	CMPQ SI, DX
	JB   exp2_loop

	VEXTRACTF128 $1, Y15, X1
	VADDPS X15, X1, X0
	HSUM_X0
	VMOVSS X0, ret+32(FP)
	VZEROUPPER
	RET

// EXP16 is EXP8 on zmm: Z0 (x - m) to exp, added to Z15; constants Z6 one,
// Z7 p0, Z8 c2, Z9 c1, Z10 log2e, Z11 round, Z12 hi, Z13 lo.
#define EXP16 \
	VMAXPS Z0, Z13, Z1; \
	VMINPS Z1, Z12, Z1; \
	VMOVAPS Z11, Z2; \
	VFMADD231PS Z10, Z1, Z2; \
	VSUBPS Z11, Z2, Z3; \
	VFNMADD231PS Z9, Z3, Z1; \
	VFNMADD231PS Z8, Z3, Z1; \
	VMULPS Z1, Z1, Z4; \
	VMOVAPS Z7, Z5; \
	VFMADD213PS.BCST EXPC(0), Z1, Z5; \
	VFMADD213PS.BCST EXPC(1), Z1, Z5; \
	VFMADD213PS.BCST EXPC(2), Z1, Z5; \
	VFMADD213PS.BCST EXPC(3), Z1, Z5; \
	VFMADD213PS.BCST EXPC(4), Z1, Z5; \
	VFMADD213PS Z1, Z4, Z5; \
	VADDPS Z6, Z5, Z5; \
	VPSLLD $23, Z2, Z2; \
	VPADDD Z6, Z2, Z2; \
	VMULPS Z2, Z5, Z5; \
	VCMPPS $5, Z13, Z0, K1; \
	VMOVAPS.Z Z5, K1, Z0; \
	VADDPS Z0, Z15, Z15

// func expShiftAVX512(x []float32, m float32) float32
// As expShiftAVX2, len(x) a positive multiple of 16.
TEXT ·expShiftAVX512(SB), NOSPLIT, $0-36
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	VBROADCASTSS m+24(FP), Z14
	VPXORD Z15, Z15, Z15
	VBROADCASTSS EXPC(12), Z6
	VBROADCASTSS EXPC(5), Z7
	VBROADCASTSS EXPC(8), Z8
	VBROADCASTSS EXPC(7), Z9
	VBROADCASTSS EXPC(6), Z10
	VBROADCASTSS EXPC(9), Z11
	VBROADCASTSS EXPC(11), Z12
	VBROADCASTSS EXPC(10), Z13
	LEAQ (SI)(CX*4), DX

exp5_loop:
	VMOVUPS (SI), Z0
	VSUBPS Z14, Z0, Z0
	EXP16
	VMOVUPS Z0, (SI)
	ADDQ $64, SI
	CMPQ SI, DX
	JB   exp5_loop

	VEXTRACTF64X4 $1, Z15, Y1
	VADDPS Y15, Y1, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	HSUM_X0
	VMOVSS X0, ret+32(FP)
	VZEROUPPER
	RET

// func accRowsAVX2(acc, p, rows []float32)
// acc += sum_j p[j] * rows[j*d:(j+1)*d], d = len(acc) a multiple of 8,
// len(p) >= 1.
TEXT ·accRowsAVX2(SB), NOSPLIT, $0-72
	MOVQ acc_base+0(FP), DI
	MOVQ acc_len+8(FP), DX
	MOVQ p_base+24(FP), SI
	MOVQ p_len+32(FP), CX
	MOVQ rows_base+48(FP), BX
	MOVQ DX, R8
	SHLQ $2, R8             // row stride in bytes
	LEAQ (R8)(R8*2), R9
	XORQ AX, AX             // column offset in bytes

acc2_cols64:
	LEAQ 256(AX), R10
	CMPQ R10, R8
	JA   acc2_cols8
	VMOVUPS (DI)(AX*1), Y0
	VMOVUPS 32(DI)(AX*1), Y1
	VMOVUPS 64(DI)(AX*1), Y2
	VMOVUPS 96(DI)(AX*1), Y3
	VMOVUPS 128(DI)(AX*1), Y4
	VMOVUPS 160(DI)(AX*1), Y5
	VMOVUPS 192(DI)(AX*1), Y6
	VMOVUPS 224(DI)(AX*1), Y7
	LEAQ (BX)(AX*1), R11    // row j at this column
	MOVQ SI, R12
	MOVQ CX, R13

acc2_rows64:
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
	JNZ  acc2_rows64

	VMOVUPS Y0, (DI)(AX*1)
	VMOVUPS Y1, 32(DI)(AX*1)
	VMOVUPS Y2, 64(DI)(AX*1)
	VMOVUPS Y3, 96(DI)(AX*1)
	VMOVUPS Y4, 128(DI)(AX*1)
	VMOVUPS Y5, 160(DI)(AX*1)
	VMOVUPS Y6, 192(DI)(AX*1)
	VMOVUPS Y7, 224(DI)(AX*1)
	MOVQ R10, AX
	JMP  acc2_cols64

acc2_cols8:
	CMPQ AX, R8
	JAE  acc2_done
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	LEAQ (BX)(AX*1), R11
	MOVQ SI, R12
	MOVQ CX, R13

acc2_rows8x4:
	CMPQ R13, $4
	JB   acc2_rows8x1
	VBROADCASTSS (R12), Y8
	VBROADCASTSS 4(R12), Y9
	VBROADCASTSS 8(R12), Y10
	VBROADCASTSS 12(R12), Y11
	VFMADD231PS (R11), Y8, Y0
	VFMADD231PS (R11)(R8*1), Y9, Y1
	VFMADD231PS (R11)(R8*2), Y10, Y2
	VFMADD231PS (R11)(R9*1), Y11, Y3
	LEAQ (R11)(R8*4), R11
	ADDQ $16, R12
	SUBQ $4, R13
	JMP  acc2_rows8x4

acc2_rows8x1:
	TESTQ R13, R13
	JZ    acc2_store8
	VBROADCASTSS (R12), Y8
	VFMADD231PS (R11), Y8, Y0
	ADDQ R8, R11
	ADDQ $4, R12
	DECQ R13
	JMP  acc2_rows8x1

acc2_store8:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VADDPS (DI)(AX*1), Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ $32, AX
	JMP  acc2_cols8

acc2_done:
	VZEROUPPER
	RET

// func accRowsAVX512(acc, p, rows []float32)
// As accRowsAVX2 with d a multiple of 16.
TEXT ·accRowsAVX512(SB), NOSPLIT, $0-72
	MOVQ acc_base+0(FP), DI
	MOVQ acc_len+8(FP), DX
	MOVQ p_base+24(FP), SI
	MOVQ p_len+32(FP), CX
	MOVQ rows_base+48(FP), BX
	MOVQ DX, R8
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9
	XORQ AX, AX

acc5_cols128:
	LEAQ 512(AX), R10
	CMPQ R10, R8
	JA   acc5_cols16
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

acc5_rows128:
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
	JNZ  acc5_rows128

	VMOVUPS Z0, (DI)(AX*1)
	VMOVUPS Z1, 64(DI)(AX*1)
	VMOVUPS Z2, 128(DI)(AX*1)
	VMOVUPS Z3, 192(DI)(AX*1)
	VMOVUPS Z4, 256(DI)(AX*1)
	VMOVUPS Z5, 320(DI)(AX*1)
	VMOVUPS Z6, 384(DI)(AX*1)
	VMOVUPS Z7, 448(DI)(AX*1)
	MOVQ R10, AX
	JMP  acc5_cols128

acc5_cols16:
	CMPQ AX, R8
	JAE  acc5_done
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	LEAQ (BX)(AX*1), R11
	MOVQ SI, R12
	MOVQ CX, R13

acc5_rows16x4:
	CMPQ R13, $4
	JB   acc5_rows16x1
	VBROADCASTSS (R12), Z8
	VBROADCASTSS 4(R12), Z9
	VBROADCASTSS 8(R12), Z10
	VBROADCASTSS 12(R12), Z11
	VFMADD231PS (R11), Z8, Z0
	VFMADD231PS (R11)(R8*1), Z9, Z1
	VFMADD231PS (R11)(R8*2), Z10, Z2
	VFMADD231PS (R11)(R9*1), Z11, Z3
	LEAQ (R11)(R8*4), R11
	ADDQ $16, R12
	SUBQ $4, R13
	JMP  acc5_rows16x4

acc5_rows16x1:
	TESTQ R13, R13
	JZ    acc5_store16
	VBROADCASTSS (R12), Z8
	VFMADD231PS (R11), Z8, Z0
	ADDQ R8, R11
	ADDQ $4, R12
	DECQ R13
	JMP  acc5_rows16x1

acc5_store16:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	VADDPS (DI)(AX*1), Z0, Z0
	VMOVUPS Z0, (DI)(AX*1)
	ADDQ $64, AX
	JMP  acc5_cols16

acc5_done:
	VZEROUPPER
	RET

// func axpyAVX2(y []float32, a float32, x []float32)
// y += a*x, len(y) == len(x) a positive multiple of 8.
TEXT ·axpyAVX2(SB), NOSPLIT, $0-56
	MOVQ y_base+0(FP), DI
	MOVQ y_len+8(FP), CX
	VBROADCASTSS a+24(FP), Y15
	MOVQ x_base+32(FP), SI
	LEAQ (DI)(CX*4), DX

axpy2_loop32:
	LEAQ 128(DI), R8
	CMPQ R8, DX
	JA   axpy2_loop8
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	VFMADD231PS (SI), Y15, Y0
	VFMADD231PS 32(SI), Y15, Y1
	VFMADD231PS 64(SI), Y15, Y2
	VFMADD231PS 96(SI), Y15, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	MOVQ R8, DI
	ADDQ $128, SI
	JMP  axpy2_loop32

axpy2_loop8:
	CMPQ DI, DX
	JAE  axpy2_done
	VMOVUPS (DI), Y0
	VFMADD231PS (SI), Y15, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	JMP  axpy2_loop8

axpy2_done:
	VZEROUPPER
	RET

// func decodeF16AVX2(dst []float32, src []uint16)
// len(dst) == len(src) a positive multiple of 8.
TEXT ·decodeF16AVX2(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	LEAQ (DI)(CX*4), DX

f16_2_loop:
	VCVTPH2PS (SI), Y0
	VMOVUPS Y0, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	CMPQ DI, DX
	JB   f16_2_loop
	VZEROUPPER
	RET

// func decodeF16AVX512(dst []float32, src []uint16)
// len(dst) == len(src) a positive multiple of 16.
TEXT ·decodeF16AVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	LEAQ (DI)(CX*4), DX

f16_5_loop:
	VCVTPH2PS (SI), Z0
	VMOVUPS Z0, (DI)
	ADDQ $32, SI
	ADDQ $64, DI
	CMPQ DI, DX
	JB   f16_5_loop
	VZEROUPPER
	RET

// func decodeBF16AVX2(dst []float32, src []uint16)
// len(dst) == len(src) a positive multiple of 8.
TEXT ·decodeBF16AVX2(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	LEAQ (DI)(CX*4), DX

bf16_2_loop:
	VPMOVZXWD (SI), Y0
	VPSLLD $16, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	CMPQ DI, DX
	JB   bf16_2_loop
	VZEROUPPER
	RET

// func sumWordsAVX2(x []uint64) uint64
// Wrapping sum of x, len(x) a positive multiple of 32 (256 bytes a step,
// four independent accumulators).
TEXT ·sumWordsAVX2(SB), NOSPLIT, $0-32
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	LEAQ (SI)(CX*8), DX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3

sum2_loop:
	VPADDQ (SI), Y0, Y0
	VPADDQ 32(SI), Y1, Y1
	VPADDQ 64(SI), Y2, Y2
	VPADDQ 96(SI), Y3, Y3
	VPADDQ 128(SI), Y0, Y0
	VPADDQ 160(SI), Y1, Y1
	VPADDQ 192(SI), Y2, Y2
	VPADDQ 224(SI), Y3, Y3
	ADDQ $256, SI
	CMPQ SI, DX
	JB   sum2_loop

	VPADDQ Y1, Y0, Y0
	VPADDQ Y3, Y2, Y2
	VPADDQ Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDQ X1, X0, X0
	VPSHUFD $0x4e, X0, X1
	VPADDQ X1, X0, X0
	VMOVQ X0, AX
	MOVQ AX, ret+24(FP)
	VZEROUPPER
	RET

// func prefetchBytes(p unsafe.Pointer, n int)
// Asks for the n bytes at p (n > 0) to be brought into the caches, one
// request per 64-byte line; it reads nothing and cannot fault.
TEXT ·prefetchBytes(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), SI
	MOVQ n+8(FP), CX
	LEAQ (SI)(CX*1), DX

pf_loop:
	PREFETCHT0 (SI)
	ADDQ $64, SI
	CMPQ SI, DX
	JB   pf_loop
	RET

// Row loads of the quad kernels: one ymm of 8 float32 values from 8 stored
// values at addr, in each storage type.
#define LDF32(addr, reg) VMOVUPS addr, reg
#define LDF16(addr, reg) VCVTPH2PS addr, reg
#define LDBF16(addr, reg) VPMOVZXWD addr, reg; VPSLLD $16, reg, reg

// LOGITS_STEP is one step of 8 columns of logitsQuad: rows j (R10) and j+1
// (R10+R11) against the 4 query heads (R12, stride R8; R9 = 3 strides),
// into Y0..Y3 (row j, heads 0..3) and Y4..Y7 (row j+1).
#define LOGITS_STEP(LD) \
	LD((R10), Y8); \
	LD((R10)(R11*1), Y9); \
	VMOVUPS (R12), Y10; \
	VFMADD231PS Y8, Y10, Y0; \
	VFMADD231PS Y9, Y10, Y4; \
	VMOVUPS (R12)(R8*1), Y11; \
	VFMADD231PS Y8, Y11, Y1; \
	VFMADD231PS Y9, Y11, Y5; \
	VMOVUPS (R12)(R8*2), Y12; \
	VFMADD231PS Y8, Y12, Y2; \
	VFMADD231PS Y9, Y12, Y6; \
	VMOVUPS (R12)(R9*1), Y13; \
	VFMADD231PS Y8, Y13, Y3; \
	VFMADD231PS Y9, Y13, Y7

// ACC_STEP is one row of accQuad over 16 columns: the row's 16 values at
// R10 (the second 8 at R10+half) times p[j][0..3] (R12) into Y0..Y7 (two
// ymm per head).
#define ACC_STEP(LD, half) \
	LD((R10), Y8); \
	LD(half(R10), Y9); \
	VBROADCASTSS (R12), Y10; \
	VFMADD231PS Y8, Y10, Y0; \
	VFMADD231PS Y9, Y10, Y1; \
	VBROADCASTSS 4(R12), Y11; \
	VFMADD231PS Y8, Y11, Y2; \
	VFMADD231PS Y9, Y11, Y3; \
	VBROADCASTSS 8(R12), Y12; \
	VFMADD231PS Y8, Y12, Y4; \
	VFMADD231PS Y9, Y12, Y5; \
	VBROADCASTSS 12(R12), Y13; \
	VFMADD231PS Y8, Y13, Y6; \
	VFMADD231PS Y9, Y13, Y7

// func logitsQuadF32AVX2(dst, q []float32, rows []float32, scale float32, mx *[4]float32)
// As logitsQuadGo over float32 rows: n = len(dst)/4 rows, a positive even
// number; d = len(q)/4 a multiple of 8.
TEXT ·logitsQuadF32AVX2(SB), NOSPLIT, $0-88
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ q_base+24(FP), SI
	MOVQ q_len+32(FP), DX
	MOVQ rows_base+48(FP), BX
	VBROADCASTSS scale+72(FP), Y15
	SHRQ $3, CX             // pairs of rows
	MOVQ DX, R8             // 4d values: q head stride d*4 bytes
	LEAQ (R8)(R8*2), R9
	MOVQ DX, R11
	SHLQ $2, R11
	SHRQ $2, R11            // row stride: d values in bytes
	MOVQ mx+80(FP), AX
	VBROADCASTF128 (AX), Y14 // running maxima, 4 heads twice

lqf32_pair:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ BX, R10
	MOVQ SI, R12
	LEAQ (SI)(R8*1), R13    // end of head 0's query

lqf32_step:
	LOGITS_STEP(LDF32)
	ADDQ $32, R10
	ADDQ $32, R12
	CMPQ R12, R13
	JB   lqf32_step

	HADD8                   // Y0 = [row j heads 0..3, row j+1 heads 0..3]
	VMULPS Y15, Y0, Y0
	VMOVUPS Y0, (DI)
	VMAXPS Y0, Y14, Y14     // NaN may be skipped: it stays in dst
	ADDQ $32, DI
	LEAQ (BX)(R11*2), BX
	DECQ CX
	JNZ  lqf32_pair
	VEXTRACTF128 $1, Y14, X1
	VMAXPS X1, X14, X14
	VMOVUPS X14, (AX)
	VZEROUPPER
	RET

// func accQuadF32AVX2(acc, p []float32, rows []float32)
// As accQuadGo over float32 rows: d = len(acc)/4 a multiple of 16,
// n = len(p)/4 >= 1.
TEXT ·accQuadF32AVX2(SB), NOSPLIT, $0-72
	MOVQ acc_base+0(FP), DI
	MOVQ acc_len+8(FP), DX
	MOVQ p_base+24(FP), SI
	MOVQ p_len+32(FP), CX
	MOVQ rows_base+48(FP), BX
	SHRQ $2, CX             // n
	MOVQ DX, R8             // 4d values: acc head stride d*4 bytes
	LEAQ (R8)(R8*2), R9
	MOVQ DX, R11
	SHLQ $2, R11
	SHRQ $2, R11            // row stride: d values in bytes
	SHRQ $6, DX             // blocks of 16 columns

aqf32_cols:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS (DI)(R8*1), Y2
	VMOVUPS 32(DI)(R8*1), Y3
	VMOVUPS (DI)(R8*2), Y4
	VMOVUPS 32(DI)(R8*2), Y5
	VMOVUPS (DI)(R9*1), Y6
	VMOVUPS 32(DI)(R9*1), Y7
	MOVQ BX, R10
	MOVQ SI, R12
	MOVQ CX, R13

aqf32_rows:
	ACC_STEP(LDF32, 32)
	ADDQ R11, R10
	ADDQ $16, R12
	DECQ R13
	JNZ  aqf32_rows

	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, (DI)(R8*1)
	VMOVUPS Y3, 32(DI)(R8*1)
	VMOVUPS Y4, (DI)(R8*2)
	VMOVUPS Y5, 32(DI)(R8*2)
	VMOVUPS Y6, (DI)(R9*1)
	VMOVUPS Y7, 32(DI)(R9*1)
	ADDQ $64, DI
	ADDQ $64, BX
	DECQ DX
	JNZ  aqf32_cols
	VZEROUPPER
	RET

// func logitsQuadF16AVX2(dst, q []float32, rows []uint16, scale float32, mx *[4]float32)
// As logitsQuadGo over uint16 rows: n = len(dst)/4 rows, a positive even
// number; d = len(q)/4 a multiple of 8.
TEXT ·logitsQuadF16AVX2(SB), NOSPLIT, $0-88
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ q_base+24(FP), SI
	MOVQ q_len+32(FP), DX
	MOVQ rows_base+48(FP), BX
	VBROADCASTSS scale+72(FP), Y15
	SHRQ $3, CX             // pairs of rows
	MOVQ DX, R8             // 4d values: q head stride d*4 bytes
	LEAQ (R8)(R8*2), R9
	MOVQ DX, R11
	SHLQ $1, R11
	SHRQ $2, R11            // row stride: d values in bytes
	MOVQ mx+80(FP), AX
	VBROADCASTF128 (AX), Y14 // running maxima, 4 heads twice

lqf16_pair:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ BX, R10
	MOVQ SI, R12
	LEAQ (SI)(R8*1), R13    // end of head 0's query

lqf16_step:
	LOGITS_STEP(LDF16)
	ADDQ $16, R10
	ADDQ $32, R12
	CMPQ R12, R13
	JB   lqf16_step

	HADD8                   // Y0 = [row j heads 0..3, row j+1 heads 0..3]
	VMULPS Y15, Y0, Y0
	VMOVUPS Y0, (DI)
	VMAXPS Y0, Y14, Y14     // NaN may be skipped: it stays in dst
	ADDQ $32, DI
	LEAQ (BX)(R11*2), BX
	DECQ CX
	JNZ  lqf16_pair
	VEXTRACTF128 $1, Y14, X1
	VMAXPS X1, X14, X14
	VMOVUPS X14, (AX)
	VZEROUPPER
	RET

// func accQuadF16AVX2(acc, p []float32, rows []uint16)
// As accQuadGo over uint16 rows: d = len(acc)/4 a multiple of 16,
// n = len(p)/4 >= 1.
TEXT ·accQuadF16AVX2(SB), NOSPLIT, $0-72
	MOVQ acc_base+0(FP), DI
	MOVQ acc_len+8(FP), DX
	MOVQ p_base+24(FP), SI
	MOVQ p_len+32(FP), CX
	MOVQ rows_base+48(FP), BX
	SHRQ $2, CX             // n
	MOVQ DX, R8             // 4d values: acc head stride d*4 bytes
	LEAQ (R8)(R8*2), R9
	MOVQ DX, R11
	SHLQ $1, R11
	SHRQ $2, R11            // row stride: d values in bytes
	SHRQ $6, DX             // blocks of 16 columns

aqf16_cols:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS (DI)(R8*1), Y2
	VMOVUPS 32(DI)(R8*1), Y3
	VMOVUPS (DI)(R8*2), Y4
	VMOVUPS 32(DI)(R8*2), Y5
	VMOVUPS (DI)(R9*1), Y6
	VMOVUPS 32(DI)(R9*1), Y7
	MOVQ BX, R10
	MOVQ SI, R12
	MOVQ CX, R13

aqf16_rows:
	ACC_STEP(LDF16, 16)
	ADDQ R11, R10
	ADDQ $16, R12
	DECQ R13
	JNZ  aqf16_rows

	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, (DI)(R8*1)
	VMOVUPS Y3, 32(DI)(R8*1)
	VMOVUPS Y4, (DI)(R8*2)
	VMOVUPS Y5, 32(DI)(R8*2)
	VMOVUPS Y6, (DI)(R9*1)
	VMOVUPS Y7, 32(DI)(R9*1)
	ADDQ $64, DI
	ADDQ $32, BX
	DECQ DX
	JNZ  aqf16_cols
	VZEROUPPER
	RET

// func logitsQuadBF16AVX2(dst, q []float32, rows []uint16, scale float32, mx *[4]float32)
// As logitsQuadGo over uint16 rows: n = len(dst)/4 rows, a positive even
// number; d = len(q)/4 a multiple of 8.
TEXT ·logitsQuadBF16AVX2(SB), NOSPLIT, $0-88
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ q_base+24(FP), SI
	MOVQ q_len+32(FP), DX
	MOVQ rows_base+48(FP), BX
	VBROADCASTSS scale+72(FP), Y15
	SHRQ $3, CX             // pairs of rows
	MOVQ DX, R8             // 4d values: q head stride d*4 bytes
	LEAQ (R8)(R8*2), R9
	MOVQ DX, R11
	SHLQ $1, R11
	SHRQ $2, R11            // row stride: d values in bytes
	MOVQ mx+80(FP), AX
	VBROADCASTF128 (AX), Y14 // running maxima, 4 heads twice

lqbf16_pair:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ BX, R10
	MOVQ SI, R12
	LEAQ (SI)(R8*1), R13    // end of head 0's query

lqbf16_step:
	LOGITS_STEP(LDBF16)
	ADDQ $16, R10
	ADDQ $32, R12
	CMPQ R12, R13
	JB   lqbf16_step

	HADD8                   // Y0 = [row j heads 0..3, row j+1 heads 0..3]
	VMULPS Y15, Y0, Y0
	VMOVUPS Y0, (DI)
	VMAXPS Y0, Y14, Y14     // NaN may be skipped: it stays in dst
	ADDQ $32, DI
	LEAQ (BX)(R11*2), BX
	DECQ CX
	JNZ  lqbf16_pair
	VEXTRACTF128 $1, Y14, X1
	VMAXPS X1, X14, X14
	VMOVUPS X14, (AX)
	VZEROUPPER
	RET

// func accQuadBF16AVX2(acc, p []float32, rows []uint16)
// As accQuadGo over uint16 rows: d = len(acc)/4 a multiple of 16,
// n = len(p)/4 >= 1.
TEXT ·accQuadBF16AVX2(SB), NOSPLIT, $0-72
	MOVQ acc_base+0(FP), DI
	MOVQ acc_len+8(FP), DX
	MOVQ p_base+24(FP), SI
	MOVQ p_len+32(FP), CX
	MOVQ rows_base+48(FP), BX
	SHRQ $2, CX             // n
	MOVQ DX, R8             // 4d values: acc head stride d*4 bytes
	LEAQ (R8)(R8*2), R9
	MOVQ DX, R11
	SHLQ $1, R11
	SHRQ $2, R11            // row stride: d values in bytes
	SHRQ $6, DX             // blocks of 16 columns

aqbf16_cols:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS (DI)(R8*1), Y2
	VMOVUPS 32(DI)(R8*1), Y3
	VMOVUPS (DI)(R8*2), Y4
	VMOVUPS 32(DI)(R8*2), Y5
	VMOVUPS (DI)(R9*1), Y6
	VMOVUPS 32(DI)(R9*1), Y7
	MOVQ BX, R10
	MOVQ SI, R12
	MOVQ CX, R13

aqbf16_rows:
	ACC_STEP(LDBF16, 16)
	ADDQ R11, R10
	ADDQ $16, R12
	DECQ R13
	JNZ  aqbf16_rows

	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, (DI)(R8*1)
	VMOVUPS Y3, 32(DI)(R8*1)
	VMOVUPS Y4, (DI)(R8*2)
	VMOVUPS Y5, 32(DI)(R8*2)
	VMOVUPS Y6, (DI)(R9*1)
	VMOVUPS Y7, 32(DI)(R9*1)
	ADDQ $64, DI
	ADDQ $32, BX
	DECQ DX
	JNZ  aqbf16_cols
	VZEROUPPER
	RET


// func expShiftQuadAVX2(x []float32, m *[4]float32, sums *[4]float32)
// As expShiftQuadGo: x[i] = exp(x[i]-m[i%4]), sums[h] = the sum of the
// results of head h; len(x) a positive multiple of 8, x[i]-m[i%4] <= 88.
TEXT ·expShiftQuadAVX2(SB), NOSPLIT, $0-40
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVQ m+24(FP), AX
	MOVQ sums+32(FP), DI
	VBROADCASTF128 (AX), Y14
	VXORPS Y15, Y15, Y15
	VMOVUPS EXPC(12), Y6
	VMOVUPS EXPC(5), Y7
	VMOVUPS EXPC(8), Y8
	VMOVUPS EXPC(7), Y9
	VMOVUPS EXPC(6), Y10
	VMOVUPS EXPC(9), Y11
	VMOVUPS EXPC(11), Y12
	VMOVUPS EXPC(10), Y13
	LEAQ (SI)(CX*4), DX

expq2_loop:
	VMOVUPS (SI), Y0
	VSUBPS Y14, Y0, Y0
	EXP8
	VMOVUPS Y0, (SI)
	ADDQ $32, SI
	CMPQ SI, DX
	JB   expq2_loop

	VEXTRACTF128 $1, Y15, X1
	VADDPS X15, X1, X0
	VMOVUPS X0, (DI)
	VZEROUPPER
	RET
