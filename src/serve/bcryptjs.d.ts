// bcryptjs 2.x ships no type declarations; this is the one function ferry uses.
declare module 'bcryptjs' {
  function compare(password: string, hash: string): Promise<boolean>;
  const bcrypt: { compare: typeof compare };
  export default bcrypt;
}
