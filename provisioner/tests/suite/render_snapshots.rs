//! Every stack of every environment, rendered and compared with its reviewed snapshot
//! (`cargo insta review` after an intended change).

use crate::common;

use provisioner::config;
use provisioner::project::Project;
use provisioner::render::Renderer;

#[test]
fn every_stack_of_every_environment_matches_its_snapshot_and_passes_the_checks() {
    let project = Project::at(&common::repo_root());
    let renderer = Renderer::load(&project).expect("templates load");
    let environments = config::list(&project).expect("environments listed");
    assert_eq!(environments, ["dev", "local", "prod", "staging"]);
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        for name in &environments {
            let env = renderer
                .load_environment(&project, name)
                .expect("environment loads");
            let rendered = renderer.render(&env).expect("environment renders");
            let ids: Vec<&str> = rendered.stacks.iter().map(|s| s.id.as_str()).collect();
            assert_eq!(
                ids,
                [
                    "network",
                    "data",
                    "messaging",
                    "security",
                    "compute",
                    "observability"
                ]
            );
            let findings = &rendered.findings;
            assert!(findings.is_empty(), "{name}: {findings:#?}");
            let bootstrap = &rendered.bootstrap;
            insta::assert_snapshot!(format!("{name}__{}", bootstrap.id), bootstrap.body);
            for stack in &rendered.stacks {
                insta::assert_snapshot!(format!("{name}__{}", stack.id), stack.body);
            }
        }
    });
}
