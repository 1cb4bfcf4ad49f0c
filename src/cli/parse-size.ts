// Sizes on the command line: "512M", "2G", "1048576", "64MiB".
import { InputError } from '../common/errors.js';

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

export function parseSize(flag: string, text: string, defaultUnit: 'M' | '' = 'M'): number {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!match) throw new InputError(`${flag} ${JSON.stringify(text)}: not a size (examples: 512M, 2G)`);
  const unit = match[2] === '' && !/B$/i.test(text.trim()) ? defaultUnit : match[2]!.toUpperCase();
  const bytes = Number(match[1]) * UNITS[unit]!;
  if (!Number.isSafeInteger(bytes)) throw new InputError(`${flag} ${text}: must be a whole number of bytes`);
  return bytes;
}

export function parseCount(flag: string, text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new InputError(`${flag} ${JSON.stringify(text)}: not a whole number`);
  return Number(text);
}
