//go:build race && amd64 && !noasm

package quant

const raceEnabled = true
