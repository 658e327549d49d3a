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
// HSUM_X0 leaves the sum of the 4 lanes of X0 in its lane 0, using X1.
#define HSUM_X0 \
	VMOVHLPS X0, X0, X1; \
	VADDPS X1, X0, X0; \
	VMOVSHDUP X0, X1; \
	VADDSS X1, X0, X0

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

// EXP8V is EXP8 without the sum: Y0 (x - m) to exp(x - m).
#define EXP8V \
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
	VANDNPS Y5, Y3, Y0;


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

// func scaleAVX2(x []float32, a float32)
// x *= a, len(x) a positive multiple of 8.
TEXT ·scaleAVX2(SB), NOSPLIT, $0-28
	MOVQ x_base+0(FP), DI
	MOVQ x_len+8(FP), CX
	VBROADCASTSS a+24(FP), Y15
	LEAQ (DI)(CX*4), DX

scale2_loop32:
	LEAQ 128(DI), R8
	CMPQ R8, DX
	JA   scale2_loop8
	VMULPS (DI), Y15, Y0
	VMULPS 32(DI), Y15, Y1
	VMULPS 64(DI), Y15, Y2
	VMULPS 96(DI), Y15, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	MOVQ R8, DI
	JMP  scale2_loop32

scale2_loop8:
	CMPQ DI, DX
	JAE  scale2_done
	VMULPS (DI), Y15, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	JMP  scale2_loop8

scale2_done:
	VZEROUPPER
	RET

// The decoders read their source in order and ask the second-level cache
// for the bytes DECPF ahead (PREFETCHT2, a line every 64 source bytes): a
// block of 16-bit rows decoded for the per-head path is where its rows are
// first read from memory, and DECPF is one such block (32 rows of 128
// values) ahead.
#define DECPF 8192

// func decodeF16AVX2(dst []float32, src []uint16)
// len(dst) == len(src) a positive multiple of 8.
TEXT ·decodeF16AVX2(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	LEAQ (DI)(CX*4), DX

f16_2_loop32:
	LEAQ 128(DI), R8
	CMPQ R8, DX
	JA   f16_2_loop8
	PREFETCHT2 DECPF(SI)
	VCVTPH2PS (SI), Y0
	VCVTPH2PS 16(SI), Y1
	VCVTPH2PS 32(SI), Y2
	VCVTPH2PS 48(SI), Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $64, SI
	MOVQ R8, DI
	JMP  f16_2_loop32

f16_2_loop8:
	CMPQ DI, DX
	JAE  f16_2_done
	VCVTPH2PS (SI), Y0
	VMOVUPS Y0, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	JMP  f16_2_loop8

f16_2_done:
	VZEROUPPER
	RET

// func decodeF16AVX512(dst []float32, src []uint16)
// len(dst) == len(src) a positive multiple of 16.
TEXT ·decodeF16AVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	LEAQ (DI)(CX*4), DX

f16_5_loop32:
	LEAQ 128(DI), R8
	CMPQ R8, DX
	JA   f16_5_loop16
	PREFETCHT2 DECPF(SI)
	VCVTPH2PS (SI), Z0
	VCVTPH2PS 32(SI), Z1
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	ADDQ $64, SI
	MOVQ R8, DI
	JMP  f16_5_loop32

f16_5_loop16:
	CMPQ DI, DX
	JAE  f16_5_done
	VCVTPH2PS (SI), Z0
	VMOVUPS Z0, (DI)
	ADDQ $32, SI
	ADDQ $64, DI
	JMP  f16_5_loop16

f16_5_done:
	VZEROUPPER
	RET

// func decodeBF16AVX2(dst []float32, src []uint16)
// len(dst) == len(src) a positive multiple of 8.
TEXT ·decodeBF16AVX2(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	LEAQ (DI)(CX*4), DX

bf16_2_loop32:
	LEAQ 128(DI), R8
	CMPQ R8, DX
	JA   bf16_2_loop8
	PREFETCHT2 DECPF(SI)
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPMOVZXWD 32(SI), Y2
	VPMOVZXWD 48(SI), Y3
	VPSLLD $16, Y0, Y0
	VPSLLD $16, Y1, Y1
	VPSLLD $16, Y2, Y2
	VPSLLD $16, Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $64, SI
	MOVQ R8, DI
	JMP  bf16_2_loop32

bf16_2_loop8:
	CMPQ DI, DX
	JAE  bf16_2_done
	VPMOVZXWD (SI), Y0
	VPSLLD $16, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	JMP  bf16_2_loop8

bf16_2_done:
	VZEROUPPER
	RET

// func decodeBF16AVX512(dst []float32, src []uint16)
// len(dst) == len(src) a positive multiple of 16.
TEXT ·decodeBF16AVX512(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	LEAQ (DI)(CX*4), DX

bf16_5_loop32:
	LEAQ 128(DI), R8
	CMPQ R8, DX
	JA   bf16_5_loop16
	PREFETCHT2 DECPF(SI)
	VPMOVZXWD (SI), Z0
	VPMOVZXWD 32(SI), Z1
	VPSLLD $16, Z0, Z0
	VPSLLD $16, Z1, Z1
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	ADDQ $64, SI
	MOVQ R8, DI
	JMP  bf16_5_loop32

bf16_5_loop16:
	CMPQ DI, DX
	JAE  bf16_5_done
	VPMOVZXWD (SI), Z0
	VPSLLD $16, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $32, SI
	ADDQ $64, DI
	JMP  bf16_5_loop16

bf16_5_done:
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

// func expShiftQuadAVX2(x []float32, m *[4]float32, sums *[4]float32)
// x[i] = exp(x[i]-m[i%4]) as expQuadGo, sums[h] += the sum of the
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

// func expQuadAVX512(x []float32, m *[4]float32)
// x[i] = exp(x[i]-m[i%4]), lane for lane the arithmetic of EXP8 (so that
// expShiftQuadAVX2 gives the same bits); len(x) a positive multiple of 16,
// x[i]-m[i%4] <= 88.
TEXT ·expQuadAVX512(SB), NOSPLIT, $0-32
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVQ m+24(FP), AX
	VBROADCASTF32X4 (AX), Z14
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

expq5_loop:
	VMOVUPS (SI), Z0
	VSUBPS Z14, Z0, Z0
	EXP16
	VMOVUPS Z0, (SI)
	ADDQ $64, SI
	CMPQ SI, DX
	JB   expq5_loop
	VZEROUPPER
	RET

// func expSumQuadAVX512(x []float32, m *[4]float32, part *[16]float32)
// x[i] = exp(x[i]-m[i%4]) as expQuadAVX512, len(x) a positive multiple of
// 16, and adds the results into part in order: part[r*4+h] += the values
// of rows j = r mod 4 (x[j*4+h]), the partial sums of blockSumQuad.
TEXT ·expSumQuadAVX512(SB), NOSPLIT, $0-40
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVQ m+24(FP), AX
	MOVQ part+32(FP), DI
	VBROADCASTF32X4 (AX), Z14
	VMOVUPS (DI), Z15
	VBROADCASTSS EXPC(12), Z6
	VBROADCASTSS EXPC(5), Z7
	VBROADCASTSS EXPC(8), Z8
	VBROADCASTSS EXPC(7), Z9
	VBROADCASTSS EXPC(6), Z10
	VBROADCASTSS EXPC(9), Z11
	VBROADCASTSS EXPC(11), Z12
	VBROADCASTSS EXPC(10), Z13
	LEAQ (SI)(CX*4), DX

esq5_loop:
	VMOVUPS (SI), Z0
	VSUBPS Z14, Z0, Z0
	EXP16
	VMOVUPS Z0, (SI)
	ADDQ $64, SI
	CMPQ SI, DX
	JB   esq5_loop
	VMOVUPS Z15, (DI)
	VZEROUPPER
	RET

// func expSumQuadAVX2(x []float32, m *[4]float32, part *[16]float32)
// As expSumQuadAVX512 (the same bits): rows 4k, 4k+1 add into part[0:8],
// rows 4k+2, 4k+3 into part[8:16].
TEXT ·expSumQuadAVX2(SB), NOSPLIT, $0-40
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVQ m+24(FP), AX
	MOVQ part+32(FP), DI
	VBROADCASTF128 (AX), Y14
	VMOVUPS (DI), Y15
	VMOVUPS EXPC(12), Y6
	VMOVUPS EXPC(5), Y7
	VMOVUPS EXPC(8), Y8
	VMOVUPS EXPC(7), Y9
	VMOVUPS EXPC(6), Y10
	VMOVUPS EXPC(9), Y11
	VMOVUPS EXPC(11), Y12
	VMOVUPS EXPC(10), Y13
	LEAQ (SI)(CX*4), DX

esq2_loop:
	VMOVUPS (SI), Y0
	VSUBPS Y14, Y0, Y0
	EXP8V
	VMOVUPS Y0, (SI)
	VADDPS Y0, Y15, Y15
	VMOVUPS 32(SI), Y0
	VSUBPS Y14, Y0, Y0
	EXP8V
	VMOVUPS Y0, 32(SI)
	VADDPS 32(DI), Y0, Y1
	VMOVUPS Y1, 32(DI)
	ADDQ $64, SI
	CMPQ SI, DX
	JB   esq2_loop
	VMOVUPS Y15, (DI)
	VZEROUPPER
	RET
