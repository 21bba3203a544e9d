// Evaluates IAM requests with @cloud-copilot/iam-simulate (a maintained IAM policy simulator: identity and
// resource policies, every condition operator, KMS key-policy and cross-account rules).
// stdin: a JSON list of iam-simulate `Simulation` objects; stdout: a JSON list of
// {"result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | null, "errors": ... | null}, in order.
const { runSimulation } = require('@cloud-copilot/iam-simulate')

async function main() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  const simulations = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  const out = []
  for (const simulation of simulations) {
    const response = await runSimulation(simulation, {})
    if (response.resultType === 'error') {
      out.push({ result: null, errors: response.errors })
    } else {
      out.push({ result: response.overallResult, errors: null })
    }
  }
  process.stdout.write(JSON.stringify(out))
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error))
  process.exit(1)
})
