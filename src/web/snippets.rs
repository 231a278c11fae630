//! The ready-to-paste snippets of a reveal page: the `export` line (the one place the token
//! is written out) and curl, Python and Node calls that read it from the environment. All
//! are shown at once, so they work without JavaScript; each has its own Copy button.

pub struct Snippet {
    /// For element ids: `snippet-{id}`.
    pub id: &'static str,
    pub title: &'static str,
    pub code: String,
}

/// `base_url` is where the dashboard was reached (the gateway is served beside it).
pub fn snippets(base_url: &str, token: &str) -> Vec<Snippet> {
    let api = format!("{base_url}/api/v1");
    vec![
        Snippet {
            id: "export",
            title: "Shell: set the variable",
            code: format!("export LOWROUTER_API_KEY={token}"),
        },
        Snippet {
            id: "curl",
            title: "curl",
            code: format!(
                "curl {api}/chat/completions \\\n  -H \"Authorization: Bearer $LOWROUTER_API_KEY\" \\\n  \
                 -H \"Content-Type: application/json\" \\\n  \
                 -d '{{\"model\": \"lowrouter/auto\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'"
            ),
        },
        Snippet {
            id: "python",
            title: "Python (openai)",
            code: format!(
                "import os\nfrom openai import OpenAI\n\n\
                 client = OpenAI(\n    base_url=\"{api}\",\n    api_key=os.environ[\"LOWROUTER_API_KEY\"],\n)\n\
                 reply = client.chat.completions.create(\n    model=\"lowrouter/auto\",\n    \
                 messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}],\n)\n\
                 print(reply.choices[0].message.content)"
            ),
        },
        Snippet {
            id: "node",
            title: "Node (openai)",
            code: format!(
                "import OpenAI from \"openai\";\n\n\
                 const client = new OpenAI({{\n  baseURL: \"{api}\",\n  apiKey: process.env.LOWROUTER_API_KEY,\n}});\n\
                 const reply = await client.chat.completions.create({{\n  model: \"lowrouter/auto\",\n  \
                 messages: [{{ role: \"user\", content: \"Hello\" }}],\n}});\n\
                 console.log(reply.choices[0].message.content);"
            ),
        },
    ]
}
