// Building elements and formatting numbers, shared by the pages.

/// An element with attributes (`on...` functions become listeners) and children (strings,
/// nodes, arrays of them; null and undefined are skipped).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  const add = (child) => {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) child.forEach(add);
    else node.append(child instanceof Node ? child : String(child));
  };
  children.forEach(add);
  return node;
}

/// A number in a few significant digits.
export function fmt(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return '-';
  const a = Math.abs(value);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return value.toExponential(2);
  return String(Number(value.toPrecision(3)));
}

/// A share as a percentage.
export function pct(value) {
  return value === null || value === undefined ? '-' : `${(100 * value).toFixed(1)}%`;
}

/// A duration in seconds, short.
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '-';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
