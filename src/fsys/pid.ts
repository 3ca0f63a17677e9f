// Whether a process of this host still runs: what tells a killed run's leftovers (temps, locks, work files) from a live run's.

/** False for what cannot be a process (pid 0 or less would signal a process group). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists, under another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
