// The xz x86 branch/call/jump (BCJ) filter, decode direction. The Linux build compresses x86
// kernels with `xz --x86 --lzma2` (scripts/xz_wrap.sh), and the LZMA2 library used here does
// not implement filters, so this undoes the filter after LZMA2 decoding.
//
// What the filter does: the encoder rewrites the rel32 operand of E8 (call) / E9 (jmp)
// instructions into an absolute target (operand + position + 5), which compresses better. An
// operand is only treated as an address when its top byte is 0x00 or 0xFF (a plausible near
// displacement). Because E8/E9 bytes also occur inside other instructions, the filter keeps a
// 3-bit history of E8/E9 bytes seen in the previous three positions and skips a candidate whose
// history pattern makes it unlikely to be an opcode. The decoder must reproduce the encoder's
// decisions exactly, so the history rules below are the format's definition (.xz file format
// spec 1.1, 5.3.3 "Branch/Call/Jump Filters"; the canonical behaviour is that of XZ Utils).

/** For a 3-bit history mask: may a conversion happen at all, and which operand byte to test. */
const MASK_ALLOWS = [true, true, true, false, true, false, false, false] as const;
const MASK_BYTE_INDEX = [0, 1, 2, 2, 3, 3, 3, 3] as const;

function isAddressByte(b: number): boolean {
  return b === 0x00 || b === 0xff;
}

/** Decodes `data` in place; `startOffset` is the filter's start offset property (usually 0). */
export function bcjX86Decode(data: Uint8Array, startOffset = 0): void {
  if (data.length <= 4) return;
  const limit = data.length - 4; // the last four bytes can hold no complete candidate
  let history = 0; // bit k set: an E8/E9 byte that was not converted, k+1 positions before the last one
  let lastCandidate = -1 >>> 0; // position of the previous E8/E9 byte (as an unsigned wrap-around)
  let haveLast = false;
  let i = 0;
  for (; i < limit; i++) {
    const opcode = data[i]!;
    if ((opcode & 0xfe) !== 0xe8) continue;
    const distance = haveLast ? i - lastCandidate : Number.MAX_SAFE_INTEGER;
    if (distance > 3) {
      history = 0;
    } else {
      history = (history << (distance - 1)) & 7;
      if (history !== 0) {
        const probe = data[i + 4 - MASK_BYTE_INDEX[history]!]!;
        if (!MASK_ALLOWS[history]! || isAddressByte(probe)) {
          lastCandidate = i;
          haveLast = true;
          history = (history << 1) | 1;
          continue;
        }
      }
    }
    lastCandidate = i;
    haveLast = true;
    if (!isAddressByte(data[i + 4]!)) {
      history = (history << 1) | 1;
      continue;
    }
    let source = (data[i + 1]! | (data[i + 2]! << 8) | (data[i + 3]! << 16) | (data[i + 4]! << 24)) >>> 0;
    let target: number;
    for (;;) {
      target = (source - ((startOffset + i + 5) >>> 0)) >>> 0;
      if (history === 0) break;
      const shift = MASK_BYTE_INDEX[history]! * 8;
      const b = (target >>> (24 - shift)) & 0xff;
      if (!isAddressByte(b)) break;
      source = (target ^ (2 ** (32 - shift) - 1)) >>> 0;
    }
    // Sign-extend bit 24 into the top byte: the result is again a 0x00.. or 0xFF.. displacement.
    target &= 0x01ffffff;
    if (target & 0x01000000) target = (target | 0xfe000000) >>> 0;
    data[i + 1] = target & 0xff;
    data[i + 2] = (target >>> 8) & 0xff;
    data[i + 3] = (target >>> 16) & 0xff;
    data[i + 4] = (target >>> 24) & 0xff;
    i += 4;
  }
}
