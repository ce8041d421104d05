// TypeScript lint of the services and tests (`make lint-ts`), with type information.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', 'node_modules/**', 'ecosystem.config.cjs', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname } },
    rules: {
      // Koa and Node take promise-returning handlers (app.callback(), process.on) and handle them
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      // Prettier wraps code at 120 but leaves long strings and comments as they are
      'max-len': ['error', { code: 120, ignoreUrls: true }],
    },
  },
  {
    files: ['tests/**', 'services/*/test/**'],
    rules: {
      // chai assertions are property accesses (`.to.be.empty`)
      '@typescript-eslint/no-unused-expressions': 'off',
      // tests read JSON bodies of unknown shape
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
);
