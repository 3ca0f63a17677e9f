// Lint: typescript-eslint's type-aware rules, chosen for the bugs this tool must not have —
// a promise nobody awaits (a run that ends with work pending, or an error that never
// reaches the exit status), a promise passed where a callback is expected, unused code.
// Formatting is prettier's job (npm run format), not the linter's.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'release/**', 'bench-results/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false, attributes: false } }],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      'no-console': 'error',
      eqeqeq: ['error', 'always'],
      // Deliberate in this code base: JSON from the outside is checked field by field after parsing.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/restrict-template-expressions': 'off',
      '@typescript-eslint/no-redundant-type-constituents': 'off',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/prefer-promise-reject-errors': 'error',
      // Control characters in patterns are the point where remote text and names are cleaned of them.
      'no-control-regex': 'off',
      // Generators that fail before their first item stand for sources that die at once.
      'require-yield': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      // A spread into a call passes every element as an argument: past ~120,000 (a list of
      // images, a bundle's blobs) V8's stack overflows and a user's input became E_INTERNAL.
      'no-restricted-syntax': ['error', {
        selector: "CallExpression[callee.property.name=/^(push|unshift|splice)$/] > SpreadElement, CallExpression[callee.object.name='Math'][callee.property.name=/^(max|min)$/] > SpreadElement",
        message: 'a spread into push/unshift/Math.max passes each element as an argument and overflows the stack on large inputs: loop, or reduce',
      }],
    },
  },
  {
    files: ['test/**/*.ts', 'scripts/**/*.mjs', '*.js', '*.ts'],
    // Tests destructure helpers' methods (ctx.log) and edit parsed JSON freely.
    rules: { 'no-console': 'off', '@typescript-eslint/unbound-method': 'off', '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['scripts/**/*.mjs', 'test/**/*.mjs', 'bin/**', '*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { ...tseslint.configs.disableTypeChecked.languageOptions, globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' } },
  },
);
