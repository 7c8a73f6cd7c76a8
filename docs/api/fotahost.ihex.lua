---@meta fotahost.ihex
-- API stub for script authors (LuaLS). The module is C: plugins/ihex.c, over
-- the pure C core in plugins/ihex/ (which the unit test and fuzzer drive).
-- Errors: misuse raises; a malformed input returns nil, "name:line: cause"
-- with no code; a system error (open, read) returns nil, "path: strerror",
-- code: code is the errno.

---Intel HEX files as sparse memory images.
---
---All 6 record types are read (00 data, 01 end of file, 02 extended segment
---address, 03 start segment address, 04 extended linear address, 05 start
---linear address); every checksum is verified. CRLF, blanks around a record
---and blank lines are accepted. The same address may be given twice only
---with the same byte. Errors name the input, the line and the cause:
---
---    fw.hex:12: bad checksum: expected 0x5B, got 0x5C
---    fw.hex:3: non-hex character 'G' at column 12
---    fw.hex:40: missing end-of-file record
---    fw.hex: file too large (314572800 bytes, limit 16777216 bytes)
---
---Addresses are integers 0..0xFFFFFFFF. Misuse (a wrong argument type, an
---address out of range) raises; failures a script should handle return
---`nil, message`.
---@class fotahost.ihex
local ihex = {}

---@class fotahost.ihex.opts
---@field max_size? integer refuse a larger file before reading it, bytes (default 16 MiB)

---Reads an Intel HEX file, in chunks: the text is never held whole in memory.
---Only regular files are read.
---@param path string
---@param opts? fotahost.ihex.opts
---@return fotahost.ihex.Image|nil image
---@return string? err "path:line: cause", or "path: cause" (too large, not a regular file, no end-of-file record at all), or "path: <strerror>"
---@return integer? errno for a system error (open, read)
function ihex.load(path, opts) end

---Parses Intel HEX text.
---@param text string
---@param name? string names the text in errors (default "(string)")
---@return fotahost.ihex.Image|nil image
---@return string? err "name:line: cause"
function ihex.parse(text, name) end

---An image holding `data` from `addr` (default 0) on; no start address.
---Raises if the data would run past 0xFFFFFFFF.
---@param data string
---@param addr? integer
---@return fotahost.ihex.Image
function ihex.from_binary(data, addr) end

---A sparse byte-addressed image: segments in address order that neither
---overlap nor touch, and perhaps a start address. Its memory is freed by
---the garbage collector. tostring() gives e.g.
---"ihex image: 4086 bytes in 1 segment, 0x7000..0x7FF5" or "ihex image: empty".
---@class fotahost.ihex.Image
local Image = {}

---@class fotahost.ihex.Segment
---@field addr integer address of the first byte
---@field data string the bytes

---The segments, in address order.
---@return fotahost.ihex.Segment[]
function Image:segments() end

---The lowest and highest byte addresses (inclusive), or nil when empty.
---@return integer|nil lowest
---@return integer? highest
function Image:range() end

---The number of data bytes.
---@return integer
function Image:size() end

---The byte at `addr`, or nil where the image has none.
---@param addr integer
---@return integer|nil
function Image:get(addr) end

---The bytes of [lo, hi] (inclusive), with `fill` (default 0xFF, erased
---flash) where the image has no data. Raises if lo > hi or the range is
---over 256 MiB.
---@param lo integer
---@param hi integer
---@param fill? integer 0..255
---@return string
function Image:bytes(lo, hi, fill) end

---A new image with the bytes of both. Where they overlap the bytes must be
---equal; start addresses, if both have one, must agree (the result keeps
---this image's start address, else the other's).
---@param other fotahost.ihex.Image
---@return fotahost.ihex.Image|nil merged
---@return string? err "overlap at 0x7000: 0x0C in the first image, 0x94 in the second" (the lowest such address), or "start address 0x7000 in the first image, 0x0000 in the second"
function Image:merge(other) end

---Intel HEX text: data records of at most `record_len` bytes (default 16,
---at most 255) that never cross a 64 KiB boundary, a type 04 record where
---the upper 16 address bits change, the start address (type 03 if it came
---from one, else 05), then the end-of-file record. Lines end with "\n".
---`ihex.parse(img:to_hex())` gives the same image back.
---@param record_len? integer 1..255
---@return string
function Image:to_hex(record_len) end

---Writes `to_hex(record_len)` to `path` atomically: a temporary file in the
---same directory, fsync, then rename over `path`. On failure `path` is
---untouched and no temporary file is left. A new file gets mode 0666 minus
---the umask; a replaced file keeps its mode.
---@param path string
---@param record_len? integer 1..255
---@return true|nil ok
---@return string? err "path: <strerror>"
---@return integer? errno
function Image:write(path, record_len) end

---The start address, or nil if the file gave none. From a type 03 record
---(CS:IP) it is CS * 16 + IP; from a type 05 record, the address itself.
---@return integer|nil
function Image:start() end

return ihex
