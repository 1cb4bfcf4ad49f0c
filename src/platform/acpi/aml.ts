// A small AML (ACPI Machine Language) encoder: just the terms novm's DSDT uses. Every
// builder returns the encoded bytes; composite terms take already-encoded children.
// Grammar references are to ACPI 6.5 section 20.2 (AML grammar definition).
import { AcpiBuildError } from './errors.js';

export type Aml = Uint8Array;

export function concat(parts: readonly Aml[]): Aml {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * PkgLength (20.2.4): the encoded length counts its own bytes. One byte holds up to 63;
 * otherwise bits 7-6 of the lead byte give the number of following bytes (1-3), its low nibble
 * the lowest 4 bits, and each following byte the next 8 bits. Maximum 2^28 - 1.
 */
export function pkgLength(bodyLength: number): Aml {
  for (let extra = 0; extra <= 3; extra++) {
    const total = bodyLength + 1 + extra;
    if (extra === 0 && total < 0x40) return Uint8Array.of(total);
    if (extra > 0 && total < 2 ** (4 + 8 * extra)) {
      const out = new Uint8Array(1 + extra);
      out[0] = (extra << 6) | (total & 0x0f);
      for (let i = 1; i <= extra; i++) out[i] = Math.floor(total / 2 ** (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new AcpiBuildError('aml', `AML package of ${bodyLength} bytes exceeds the PkgLength limit`);
}

function withPkgLength(prefix: readonly number[], body: readonly Aml[]): Aml {
  const content = concat(body);
  return concat([Uint8Array.from(prefix), pkgLength(content.length), content]);
}

const NAME_SEG = /^[A-Z_][A-Z0-9_]{0,3}$/;

function nameSeg(seg: string): Aml {
  if (!NAME_SEG.test(seg)) throw new AcpiBuildError('aml', `invalid AML name segment "${seg}"`);
  const padded = seg.padEnd(4, '_');
  return Uint8Array.from(padded, (c) => c.charCodeAt(0));
}

/**
 * NameString (20.2.2): optional root '\' or parent '^' prefixes, then one segment, a
 * DualNamePrefix (0x2E) pair or a MultiNamePrefix (0x2F) count and segments.
 * Path syntax: "\\_SB.PCI0", "^FOO", "_S5".
 */
export function nameString(path: string): Aml {
  let rest = path;
  const prefix: number[] = [];
  if (rest.startsWith('\\')) {
    prefix.push(0x5c);
    rest = rest.slice(1);
  } else {
    while (rest.startsWith('^')) {
      prefix.push(0x5e);
      rest = rest.slice(1);
    }
  }
  const segs = rest === '' ? [] : rest.split('.');
  let body: Aml;
  if (segs.length === 0) body = Uint8Array.of(0x00); // NullName
  else if (segs.length === 1) body = nameSeg(segs[0]!);
  else if (segs.length === 2) body = concat([Uint8Array.of(0x2e), nameSeg(segs[0]!), nameSeg(segs[1]!)]);
  else if (segs.length <= 255) body = concat([Uint8Array.of(0x2f, segs.length), ...segs.map(nameSeg)]);
  else throw new AcpiBuildError('aml', `AML name path "${path}" has too many segments`);
  return concat([Uint8Array.from(prefix), body]);
}

/** Integer constant, shortest encoding (20.2.3: ZeroOp, OneOp, Byte/Word/DWord/QWordConst). */
export function integer(value: number | bigint): Aml {
  const v = BigInt(value);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new AcpiBuildError('aml', `AML integer out of range: ${v}`);
  if (v === 0n) return Uint8Array.of(0x00);
  if (v === 1n) return Uint8Array.of(0x01);
  if (v <= 0xffn) return Uint8Array.of(0x0a, Number(v));
  if (v <= 0xffffn) return le(0x0b, v, 2);
  if (v <= 0xffff_ffffn) return le(0x0c, v, 4);
  return le(0x0e, v, 8);
}

function le(prefix: number, value: bigint, bytes: number): Aml {
  const out = new Uint8Array(1 + bytes);
  out[0] = prefix;
  for (let i = 0; i < bytes; i++) out[1 + i] = Number((value >> BigInt(8 * i)) & 0xffn);
  return out;
}

/** String constant (StringPrefix 0x0D, ASCII, NUL-terminated). */
export function string(text: string): Aml {
  if (!/^[\x01-\x7f]*$/.test(text)) throw new AcpiBuildError('aml', `AML strings must be 7-bit ASCII without NUL: "${text}"`);
  return concat([Uint8Array.of(0x0d), Uint8Array.from(text, (c) => c.charCodeAt(0)), Uint8Array.of(0x00)]);
}

/**
 * A compressed EISA ID ("PNP0A08") as the DWord integer ASL's EisaId() produces: three
 * 5-bit letters (A = 1) and four hex digits, stored big-endian in a little-endian DWord.
 */
export function eisaId(id: string): Aml {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new AcpiBuildError('aml', `invalid EISA ID "${id}"`);
  const c = (i: number): number => id.charCodeAt(i) - 0x40;
  const hex = parseInt(id.slice(3), 16);
  const word0 = (c(0) << 10) | (c(1) << 5) | c(2);
  const out = new Uint8Array(5);
  out[0] = 0x0c;
  out[1] = word0 >> 8;
  out[2] = word0 & 0xff;
  out[3] = hex >> 8;
  out[4] = hex & 0xff;
  return out;
}

/** Name(path, object) — DefName (NameOp 0x08). */
export function name(path: string, object: Aml): Aml {
  return concat([Uint8Array.of(0x08), nameString(path), object]);
}

/** Scope(path) { terms } — DefScope (ScopeOp 0x10). */
export function scope(path: string, terms: readonly Aml[]): Aml {
  return withPkgLength([0x10], [nameString(path), ...terms]);
}

/** Device(path) { terms } — DefDevice (ExtOpPrefix 0x5B, DeviceOp 0x82). */
export function device(path: string, terms: readonly Aml[]): Aml {
  return withPkgLength([0x5b, 0x82], [nameString(path), ...terms]);
}

/** Method(path, argCount, NotSerialized) { terms } — DefMethod (MethodOp 0x14). */
export function method(path: string, argCount: number, terms: readonly Aml[]): Aml {
  if (!Number.isInteger(argCount) || argCount < 0 || argCount > 7) throw new AcpiBuildError('aml', `AML methods take 0-7 arguments, not ${argCount}`);
  return withPkgLength([0x14], [nameString(path), Uint8Array.of(argCount), ...terms]);
}

/** Return(value) — DefReturn (ReturnOp 0xA4). */
export function returnValue(value: Aml): Aml {
  return concat([Uint8Array.of(0xa4), value]);
}

/** ArgN (Arg0Op 0x68 ... Arg6Op 0x6E). */
export function arg(index: number): Aml {
  if (!Number.isInteger(index) || index < 0 || index > 6) throw new AcpiBuildError('aml', `no Arg${index}`);
  return Uint8Array.of(0x68 + index);
}

/** Package() { elements } — DefPackage (PackageOp 0x12), at most 255 elements. */
export function packageOf(elements: readonly Aml[]): Aml {
  if (elements.length > 255) throw new AcpiBuildError('aml', 'AML Package() holds at most 255 elements (use VarPackage)');
  return withPkgLength([0x12], [Uint8Array.of(elements.length), ...elements]);
}

/** Buffer() { bytes } — DefBuffer (BufferOp 0x11) with its size as an integer term. */
export function buffer(bytes: Aml): Aml {
  return withPkgLength([0x11], [integer(bytes.length), bytes]);
}
