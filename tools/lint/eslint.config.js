// Lint rules for the whole project (run from the project root: npm run lint).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/**',
      '**/dist/**',
      '.device/**',
      '.exp/**',
      '.cuda/**',
      '.comfy-src/**',
      'native/**',
      'data/**',
      'output/**',
      'input/**',
      'temp/**',
      'models/**',
      'test-output/**',
      'test/data/**',
    ],
  },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.{ts,tsx,mts,js,mjs}'],
    rules: {
      // unused values are dead code; a leading underscore marks an intentionally unused parameter
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-var': 'error',
      'prefer-const': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },
  // tests poke at JSON answers and internals: any is allowed there, nowhere else
  { files: ['test/**'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
);
