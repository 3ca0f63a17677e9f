// bcryptjs 2.x ships no type declarations; this is the one function ferry uses.
declare module 'bcryptjs' {
  const bcrypt: { compare(password: string, hash: string): Promise<boolean> };
  export default bcrypt;
}
