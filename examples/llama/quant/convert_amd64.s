//go:build amd64 && !noasm

#include "textflag.h"

// Activation conversions for kernels_amd64.go, AVX2 with F16C. Go assembler
// operand order: sources first, destination last (VDIVSS b, a, c computes
// c = a/b).

DATA absMask<>+0(SB)/4, $0x7fffffff
GLOBL absMask<>(SB), RODATA|NOPTR, $4

DATA f127<>+0(SB)/4, $0x42fe0000
GLOBL f127<>(SB), RODATA|NOPTR, $4

// perm8 puts the dwords of the packed bytes back in order after
// VPACKSSDW and VPACKSSWB, which work within 128-bit lanes.
DATA perm8<>+0(SB)/8, $0x0000000400000000
DATA perm8<>+8(SB)/8, $0x0000000500000001
DATA perm8<>+16(SB)/8, $0x0000000600000002
DATA perm8<>+24(SB)/8, $0x0000000700000003
GLOBL perm8<>(SB), RODATA|NOPTR, $32

DATA ones8<>+0(SB)/8, $0x0101010101010101
DATA ones8<>+8(SB)/8, $0x0101010101010101
DATA ones8<>+16(SB)/8, $0x0101010101010101
DATA ones8<>+24(SB)/8, $0x0101010101010101
GLOBL ones8<>(SB), RODATA|NOPTR, $32

DATA words1<>+0(SB)/8, $0x0001000100010001
DATA words1<>+8(SB)/8, $0x0001000100010001
DATA words1<>+16(SB)/8, $0x0001000100010001
DATA words1<>+24(SB)/8, $0x0001000100010001
GLOBL words1<>(SB), RODATA|NOPTR, $32

// PACK32 converts the float32 lanes of Y0-Y3 to int32 (rounding to nearest,
// halves to even: the default MXCSR mode), saturates them to 32 int8 in
// order, in Y0.
#define PACK32 \
	VCVTPS2DQ Y0, Y0; \
	VCVTPS2DQ Y1, Y1; \
	VCVTPS2DQ Y2, Y2; \
	VCVTPS2DQ Y3, Y3; \
	VPACKSSDW Y1, Y0, Y0; \
	VPACKSSDW Y3, Y2, Y2; \
	VPACKSSWB Y2, Y0, Y0; \
	VPERMD Y0, Y10, Y0

// func quantQ8_0AVX2(x *float32, y *byte, nb uintptr)
//
// quantQ8 with avx for nb >= 1 blocks: per block of 32 values, amax the
// largest magnitude, d = amax/127 stored as F16, values x*(127/amax)
// rounded to nearest even (x*0 when amax is 0).
TEXT ·quantQ8_0AVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ nb+16(FP), CX
	VBROADCASTSS absMask<>(SB), Y8
	VMOVSS f127<>(SB), X9
	VMOVDQU perm8<>(SB), Y10
	VXORPS X11, X11, X11

q80loop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VANDPS Y8, Y0, Y4
	VANDPS Y8, Y1, Y5
	VMAXPS Y5, Y4, Y4
	VANDPS Y8, Y2, Y5
	VANDPS Y8, Y3, Y6
	VMAXPS Y6, Y5, Y5
	VMAXPS Y5, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VMAXPS X5, X4, X4
	VMOVHLPS X4, X4, X5
	VMAXPS X5, X4, X4
	VMOVSHDUP X4, X5
	VMAXSS X5, X4, X4
	VDIVSS X9, X4, X5
	VDIVSS X4, X9, X6
	VCMPSS $4, X11, X4, X7
	VANDPS X7, X6, X6
	VCVTPS2PH $0, X5, X5
	VMOVD X5, AX
	MOVW AX, (DI)
	VBROADCASTSS X6, Y6
	VMULPS Y6, Y0, Y0
	VMULPS Y6, Y1, Y1
	VMULPS Y6, Y2, Y2
	VMULPS Y6, Y3, Y3
	PACK32
	VMOVDQU Y0, 2(DI)
	ADDQ $128, SI
	ADDQ $34, DI
	DECQ CX
	JNZ q80loop
	VZEROUPPER
	RET

// func rangeQ8_KAVX2(x *float32) (hi, lo float32)
//
// The largest and the smallest of 256 values.
TEXT ·rangeQ8_KAVX2(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), SI
	VMOVUPS (SI), Y0
	VMOVUPS Y0, Y1
	VMOVUPS 32(SI), Y2
	VMOVUPS Y2, Y3
	MOVQ $7, CX
	ADDQ $64, SI

rangeloop:
	VMAXPS (SI), Y0, Y0
	VMINPS (SI), Y1, Y1
	VMAXPS 32(SI), Y2, Y2
	VMINPS 32(SI), Y3, Y3
	VMAXPS 64(SI), Y0, Y0
	VMINPS 64(SI), Y1, Y1
	VMAXPS 96(SI), Y2, Y2
	VMINPS 96(SI), Y3, Y3
	ADDQ $128, SI
	DECQ CX
	JNZ rangeloop
	VMAXPS (SI), Y0, Y0
	VMINPS (SI), Y1, Y1
	VMAXPS 32(SI), Y2, Y2
	VMINPS 32(SI), Y3, Y3
	VMAXPS Y2, Y0, Y0
	VMINPS Y3, Y1, Y1
	VEXTRACTF128 $1, Y0, X2
	VMAXPS X2, X0, X0
	VMOVHLPS X0, X0, X2
	VMAXPS X2, X0, X0
	VMOVSHDUP X0, X2
	VMAXSS X2, X0, X0
	VEXTRACTF128 $1, Y1, X3
	VMINPS X3, X1, X1
	VMOVHLPS X1, X1, X3
	VMINPS X3, X1, X1
	VMOVSHDUP X1, X3
	VMINSS X3, X1, X1
	VMOVSS X0, hi+8(FP)
	VMOVSS X1, lo+12(FP)
	VZEROUPPER
	RET

// func quantQ8_KAVX2(x *float32, y *byte, iscale float32)
//
// The values and bsums of one Q8_K block (d is the caller's): values
// iscale*x rounded to nearest even (the caller's iscale keeps them within
// [-127, 127]), bsums the sums of each 16.
TEXT ·quantQ8_KAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	VBROADCASTSS iscale+16(FP), Y7
	VMOVDQU ones8<>(SB), Y5
	VMOVDQU words1<>(SB), Y6
	VMOVDQU perm8<>(SB), Y10

#define Q8K(a, b, c, d, yo, m) \
	VMULPS a(SI), Y7, Y0; \
	VMULPS b(SI), Y7, Y1; \
	VMULPS c(SI), Y7, Y2; \
	VMULPS d(SI), Y7, Y3; \
	PACK32; \
	VMOVDQU Y0, yo(DI); \
	VPMADDUBSW Y0, Y5, Y4; \
	VPMADDWD Y6, Y4, m

	Q8K(0, 32, 64, 96, 4, Y8)
	Q8K(128, 160, 192, 224, 36, Y9)
	Q8K(256, 288, 320, 352, 68, Y11)
	Q8K(384, 416, 448, 480, 100, Y12)
	Q8K(512, 544, 576, 608, 132, Y13)
	Q8K(640, 672, 704, 736, 164, Y14)
	Q8K(768, 800, 832, 864, 196, Y15)
	Q8K(896, 928, 960, 992, 228, Y10)

	// Y8 ... Y10 hold the four-value sums of groups 2k (low lane) and
	// 2k+1 (high lane) for k = 0..7; add them up to the sixteen sums.
	VPHADDD Y9, Y8, Y8
	VPHADDD Y12, Y11, Y11
	VPHADDD Y14, Y13, Y13
	VPHADDD Y10, Y15, Y15
	VPHADDD Y11, Y8, Y8
	VPHADDD Y15, Y13, Y13
	VPACKSSDW Y13, Y8, Y8
	VEXTRACTI128 $1, Y8, X9
	VPUNPCKLWD X9, X8, X11
	VPUNPCKHWD X9, X8, X12
	VMOVDQU X11, 260(DI)
	VMOVDQU X12, 276(DI)
	VZEROUPPER
	RET

// func f16sAVX2(dst *byte, src *float32, n uintptr)
//
// n >= 1 groups of 8 float32 values to binary16, rounding to nearest
// even.
TEXT ·f16sAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

f16loop:
	VMOVUPS (SI), Y0
	VCVTPS2PH $0, Y0, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	DECQ CX
	JNZ f16loop
	VZEROUPPER
	RET
