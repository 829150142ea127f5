// One code style: 120 columns, single quotes, semicolons (what the tree already mostly used).
export default { printWidth: 120, singleQuote: true, trailingComma: 'all', semi: true };
