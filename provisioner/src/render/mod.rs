//! Rendering: one typed context per stack, tera templates from `stacks/`, and the
//! rendered CloudFormation with its digest, parameters and tags, ready to check and deploy.

pub mod bootstrap;
pub mod catalog;
pub mod checks;
pub mod context;
pub mod dashboard;
pub mod functions;
pub mod policy;

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{self, Environment};
use crate::project::Project;

pub use catalog::{Catalog, StackSpec};
pub use functions::FunctionSpec;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("could not read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Catalog { file: String, message: String },
    #[error("stack `{stack}` has no template context (stacks/stacks.yaml lists it, but the provisioner does not know how to render it)")]
    UnknownStack { stack: String },
    #[error("could not load template {file}: {}", chain(.source))]
    Parse {
        file: String,
        #[source]
        source: tera::Error,
    },
    #[error("could not render {file} for environment `{env}`: {}", chain(.source))]
    Template {
        file: String,
        env: String,
        #[source]
        source: tera::Error,
    },
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
}

/// Tera's own message is only the top of the story: the cause is in the chain.
fn chain(error: &tera::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl RenderError {
    pub fn help(&self) -> Option<String> {
        match self {
            RenderError::Template { .. } => Some(
                "a variable the template uses is missing from its context or misspelt; \
                 contexts are defined in provisioner/src/render/context.rs"
                    .into(),
            ),
            RenderError::UnknownStack { .. } => Some(
                "add a context for it in provisioner/src/render/context.rs, or remove it from stacks/stacks.yaml".into(),
            ),
            RenderError::Policy(error) => Some(error.help()),
            _ => None,
        }
    }
}

/// One rendered stack.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedStack {
    /// Stack id from `stacks/stacks.yaml`, e.g. `network`.
    pub id: String,
    /// CloudFormation stack name, e.g. `datasync-dev-network`.
    pub stack_name: String,
    pub depends_on: Vec<String>,
    #[serde(skip)]
    pub body: String,
    /// sha256 of `body`, hex.
    pub sha256: String,
    /// Template parameters the deployment must supply (e.g. function code keys).
    pub parameters: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// Every stack of one environment, in deployment order, checked.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedEnvironment {
    pub env: String,
    /// sha256 of the resolved configuration (canonical JSON), hex.
    pub config_sha256: String,
    pub stacks: Vec<RenderedStack>,
    /// The bootstrap stack of the environment's account and region (deployed by
    /// `provisioner bootstrap`, not by `deploy`).
    pub bootstrap: RenderedStack,
    /// What the checks and the policy rules found in the rendered templates; empty when
    /// they are sound.
    pub findings: Vec<checks::Finding>,
    /// The policy rules' outcome: their violations (also in `findings`) and the waivers.
    pub policy: policy::PolicyReport,
}

/// Templates, stack catalog and function manifest, loaded once and rendered many times.
#[derive(Debug)]
pub struct Renderer {
    tera: tera::Tera,
    catalog: Catalog,
    functions: Vec<FunctionSpec>,
    policies: policy::Policies,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Renderer {
    pub fn load(project: &Project) -> Result<Self, RenderError> {
        let catalog = Catalog::load(project)?;
        let functions = functions::load(project)?;
        let mut tera = tera::Tera::default();
        tera.autoescape_on(Vec::new());
        let mut sources = Vec::new();
        for stack in &catalog.stacks {
            let path = project.stacks_dir().join(&stack.template);
            let file = project.display_path(&path);
            let text = std::fs::read_to_string(&path).map_err(|source| RenderError::Read {
                path: file.clone(),
                source,
            })?;
            sources.push((stack.template.clone(), text));
        }
        let path = project.stacks_dir().join(bootstrap::TEMPLATE);
        let text = std::fs::read_to_string(&path).map_err(|source| RenderError::Read {
            path: project.display_path(&path),
            source,
        })?;
        sources.push((bootstrap::TEMPLATE.to_string(), text));
        tera.add_raw_templates(sources)
            .map_err(|source| RenderError::Parse {
                file: "stacks/".into(),
                source,
            })?;
        let policies = policy::Policies::load(&project.stacks_dir().join("policies"), |path| {
            project.display_path(path)
        })?;
        Ok(Self {
            tera,
            catalog,
            functions,
            policies,
        })
    }

    /// The policy rules every rendered environment is checked against.
    pub fn policies(&self) -> &policy::Policies {
        &self.policies
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn functions(&self) -> &[FunctionSpec] {
        &self.functions
    }

    /// Loads environment `name` with this renderer's stack ids.
    pub fn load_environment(
        &self,
        project: &Project,
        name: &str,
    ) -> Result<Environment, crate::error::Error> {
        Ok(config::load(project, name, &self.catalog.ids())?)
    }

    /// Renders every stack of `env`, in deployment order.
    pub fn render(&self, env: &Environment) -> Result<RenderedEnvironment, RenderError> {
        let order = self
            .catalog
            .deployment_order()
            .map_err(|cycle| RenderError::Catalog {
                file: "stacks/stacks.yaml".into(),
                message: format!("stack dependencies form a cycle: {}", cycle.join(" -> ")),
            })?;
        let mut stacks = Vec::with_capacity(order.len());
        for spec in order {
            stacks.push(self.render_stack(env, spec)?);
        }
        // Parse every template back once: the checks, and what each declares.
        let templates: Vec<checks::StackTemplate<'_>> = stacks
            .iter()
            .map(|stack| checks::StackTemplate {
                id: &stack.id,
                depends_on: &stack.depends_on,
                body: &stack.body,
            })
            .collect();
        let mut checked = checks::check_and_describe(&templates);
        let bootstrap = self.render_bootstrap(env)?;
        let bootstrap_checked = checks::check_and_describe(&[checks::StackTemplate {
            id: &bootstrap.id,
            depends_on: &bootstrap.depends_on,
            body: &bootstrap.body,
        }]);
        checked.findings.extend(bootstrap_checked.findings);
        for stack in &mut stacks {
            stack.parameters = checked
                .parameters
                .get(&stack.id)
                .cloned()
                .unwrap_or_default();
        }
        // The policy rules over every stack of the environment at once; a violation is a
        // finding like any other (nothing that breaks a rule is deployed).
        let facts = policy::EnvironmentFacts {
            name: env.name.clone(),
            emulated: env.settings.endpoint_url.is_some(),
            retain_stateful_resources: env.settings.retain_stateful_resources,
            flow_logs: env.settings.network.flow_logs.is_some(),
        };
        let bodies: Vec<policy::StackBody<'_>> = std::iter::once(&bootstrap)
            .chain(&stacks)
            .map(|stack| policy::StackBody {
                id: &stack.id,
                body: &stack.body,
            })
            .collect();
        let policy = self.policies.evaluate(&facts, &bodies)?;
        checked
            .findings
            .extend(policy.violations.iter().map(policy::Violation::finding));
        let config_json = serde_json::to_vec(&env.settings).unwrap_or_default();
        Ok(RenderedEnvironment {
            env: env.name.clone(),
            config_sha256: sha256_hex(&config_json),
            stacks,
            bootstrap,
            findings: checked.findings,
            policy,
        })
    }

    /// Renders the bootstrap stack of `env`'s account and region.
    pub fn render_bootstrap(&self, env: &Environment) -> Result<RenderedStack, RenderError> {
        let context = bootstrap::context(env);
        let template = bootstrap::TEMPLATE;
        let error = |source| RenderError::Template {
            file: format!("stacks/{template}"),
            env: env.name.clone(),
            source,
        };
        let tera_context = tera::Context::from_serialize(&context).map_err(error)?;
        let body = self.tera.render(template, &tera_context).map_err(error)?;
        Ok(RenderedStack {
            id: bootstrap::STACK_ID.to_string(),
            stack_name: context.names.stack.clone(),
            depends_on: Vec::new(),
            sha256: sha256_hex(body.as_bytes()),
            parameters: Vec::new(),
            tags: context
                .tags
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect(),
            body,
        })
    }

    fn render_stack(
        &self,
        env: &Environment,
        spec: &StackSpec,
    ) -> Result<RenderedStack, RenderError> {
        let context = context::build(env, &spec.id, &spec.description, &self.functions)
            .ok_or_else(|| RenderError::UnknownStack {
                stack: spec.id.clone(),
            })?;
        let tera_context =
            tera::Context::from_serialize(&context).map_err(|source| RenderError::Template {
                file: format!("stacks/{}", spec.template),
                env: env.name.clone(),
                source,
            })?;
        let body = self
            .tera
            .render(&spec.template, &tera_context)
            .map_err(|source| RenderError::Template {
                file: format!("stacks/{}", spec.template),
                env: env.name.clone(),
                source,
            })?;
        Ok(RenderedStack {
            id: spec.id.clone(),
            stack_name: env.names.stack(&spec.id),
            depends_on: spec.depends_on.clone(),
            sha256: sha256_hex(body.as_bytes()),
            parameters: Vec::new(),
            tags: context
                .common()
                .tags
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect(),
            body,
        })
    }
}
