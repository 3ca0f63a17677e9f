/**
 * The "Examples:" section of --help. yargs puts an example's command in a
 * column and wraps it mid-word; a command is copied by hand from here, so it
 * is printed whole on its own line (a terminal narrower than it folds it, but
 * no line break is put inside), with its description wrapped below it.
 */
export function renderExamples(examples: readonly { command: string; describe: string }[], columns: number): string {
  const lines = ['Examples:'];
  for (const e of examples) {
    lines.push(`  ${e.command.replace(/\$0/g, 'ferry')}`);
    if (e.describe) for (const l of wrapWords(e.describe, columns - 6)) lines.push(`      ${l}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Words into lines of at most `width` characters (a longer word gets a line of its own). */
export function wrapWords(text: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') out.push(line);
  return out;
}
