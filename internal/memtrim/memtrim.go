// Package memtrim gives back the pages of the agent's own binary that only
// start-up needed.
//
// A Go binary's code and read-only data are file-backed, private
// mappings. Start-up runs the init code of a few hundred packages spread
// over the whole text, and the kernel maps every fault in a 64 KB
// "fault-around" window of pages already in the page cache, so after
// start nearly all of the binary is resident and counted in the
// process's RSS (about 14 of 17 MB here) although an idle agent runs a
// small part of it. Those pages stay mapped until memory pressure
// reclaims them, so on a small board they look like the agent's memory
// to every tool that reads RSS.
//
// ReleaseStartup unmaps (MADV_DONTNEED) the binary's read-only mappings
// once start-up is done. Nothing is lost: for a private file mapping
// that was never written the next access maps the same page again from
// the page cache (or re-reads it from the file), so what stays resident
// afterwards is the code and data the agent actually keeps using. The
// unmapped pages stay in the page cache as clean, unmapped file pages,
// the first the kernel drops when it needs memory. Only mappings with no
// private (copy-on-write) page are touched: a written page would revert
// to the file's contents, so a mapping that has one — a relocated PIE
// segment, a debugger's breakpoint — is left alone.
package memtrim

// Result says what ReleaseStartup did.
type Result struct {
	Mappings int   // read-only mappings of the executable released
	Bytes    int64 // resident bytes in them before the release
	Skipped  int   // read-only mappings left alone (private pages in them)
}
