//go:build race

package store

// The race detector multiplies memory and time: heavy measurements skip.
const raceEnabled = true
