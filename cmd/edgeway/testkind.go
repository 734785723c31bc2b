//go:build testkind

package main

// Built with -tags testkind, the binary carries the test-only line kind
// "linetest" so that subprocess tests can watch reloads act on a gateway.
import "github.com/edgeway/edgeway/internal/testkind"

func init() { testkind.Register("linetest") }
