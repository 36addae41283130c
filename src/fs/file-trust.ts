/**
 * Why another user could have put or swapped files in what `st` describes, in words, or undefined:
 * it is writable by group or others, or it belongs to a user other than us and root (as OpenSSH
 * judges a key file). A sticky directory (/tmp) may be writable by all when `stickyIsFine`: others
 * can neither rename nor remove what is ours in it. Windows has no such modes: nothing is refused.
 */
export function writableByOthers(st: { mode: number; uid: number }, stickyIsFine = false): string | undefined {
  const me = process.getuid?.();
  if (me === undefined) return undefined;
  if (st.mode & 0o022 && !(stickyIsFine && st.mode & 0o1000))
    return `other users can write it (mode ${(st.mode & 0o7777).toString(8)})`;
  if (st.uid !== 0 && st.uid !== me) return `it belongs to another user (uid ${st.uid})`;
  return undefined;
}
