//! `lbctl`: runs the whole lbaas stack on one machine (`lbctl stack`) and talks to the tenant API
//! the way `openstack loadbalancer ...` talks to Octavia (`lbctl loadbalancer ...`, alias `lb`;
//! `lbctl certificate ...`), and to the scheduler's provider API the way Octavia's operators do
//! (`lbctl loadbalancer flavor|device|network|agent|provider|explain ...`).

mod agent;
mod certificate;
mod client;
mod common;
mod device;
mod enums;
mod explain;
mod flavor;
mod healthmonitor;
mod l7policy;
mod l7rule;
mod lab;
mod listener;
mod loadbalancer;
mod member;
mod network;
mod operator;
mod output;
mod pool;
mod provider;
mod quota;
mod render;
mod stack;
mod wait;
mod zone;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "lbctl",
    about = "lbaas command line: run the stack, manage load balancers",
    after_help = "Object commands follow `openstack loadbalancer ...`: e.g.\n  \
        lbctl loadbalancer create --name web --wait\n  \
        lbctl loadbalancer listener create --protocol HTTP --protocol-port 80 web\n  \
        lbctl loadbalancer pool create --protocol HTTP --lb-algorithm ROUND_ROBIN --listener LISTENER\n  \
        lbctl loadbalancer member create --address 10.0.0.5 --protocol-port 8080 POOL\n  \
        lbctl loadbalancer list -o json\n\n\
        Operator commands use the scheduler (--scheduler) and an admin --token: e.g.\n  \
        lbctl loadbalancer flavor create --name gold --driver haproxy --required-label tier=gold\n  \
        lbctl loadbalancer device list\n  \
        lbctl loadbalancer explain --flavor gold"
)]
struct Cli {
    /// The tenant API.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "LBAAS_API_URL",
        default_value = "http://127.0.0.1:9001"
    )]
    api: String,
    /// The scheduler, for the operator commands (flavor, device, network, agent, provider,
    /// explain).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "LBAAS_SCHEDULER_URL",
        default_value = "http://127.0.0.1:9002"
    )]
    scheduler: String,
    /// The project to act in (sent as x-project-id).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "LBAAS_PROJECT",
        default_value = "demo"
    )]
    project: String,
    /// A bearer token (instead of --project).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "LBAAS_TOKEN"
    )]
    token: Option<String>,
    /// Output format (openstack's -f works too).
    #[arg(
        short = 'o',
        long = "output",
        visible_short_alias = 'f',
        visible_alias = "format",
        global = true,
        help_heading = "Output options",
        value_enum
    )]
    output: Option<output::Format>,
    /// Only this column (field); repeat for more.
    #[arg(
        short = 'c',
        long = "column",
        global = true,
        help_heading = "Output options",
        value_name = "COLUMN"
    )]
    columns: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the api, scheduler and a local agent in one process, with SQLite under --data-dir.
    Stack(stack::StackArgs),
    /// A lab of hosts in network namespaces: device hosts with agents, a client, tenant members
    /// (root only; `lab up`, `lab down`, `lab kill-host`).
    #[command(subcommand)]
    Lab(lab::Command),
    /// Load balancers and everything under them; for operators, flavors, devices and placement.
    #[command(subcommand, visible_alias = "lb")]
    Loadbalancer(Loadbalancer),
    /// TLS certificates for TERMINATED_HTTPS listeners.
    #[command(subcommand)]
    Certificate(certificate::Command),
    /// The native data plane of one device (the agent of `lbctl stack` and of the lab starts it).
    #[command(hide = true)]
    Dataplane(lbaas_agent::dataplane::DataPlaneArgs),
}

/// `lbctl loadbalancer ...`: the tenant commands, which use the api, and the operator ones, which
/// use the scheduler; each connects only to its own.
// Parsed once per run: the size of the larger variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Loadbalancer {
    #[command(flatten)]
    Tenant(loadbalancer::Command),
    #[command(flatten)]
    Operator(operator::Command),
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = output::Printer {
        format: cli.output.unwrap_or(output::Format::Table),
        explicit: cli.output.is_some(),
        columns: cli.columns.clone(),
    };
    let ctx = |api| common::Ctx {
        api,
        out: out.clone(),
    };
    let connect = || client::Api::connect(&cli.api, &cli.project, cli.token.as_deref());
    let operator_ctx = async || -> anyhow::Result<common::OperatorCtx> {
        Ok(common::OperatorCtx {
            provider: client::Provider::connect(&cli.scheduler, &cli.project, cli.token.as_deref())
                .await?,
            project: cli.project.clone(),
            out: out.clone(),
        })
    };
    match cli.command {
        Command::Stack(args) => stack::run(args).await,
        Command::Lab(command) => lab::run(command).await,
        Command::Loadbalancer(Loadbalancer::Tenant(command)) => {
            loadbalancer::run(&ctx(connect().await?), command).await
        }
        Command::Loadbalancer(Loadbalancer::Operator(command)) => {
            operator::run(&operator_ctx().await?, command).await
        }
        Command::Certificate(command) => certificate::run(&ctx(connect().await?), command).await,
        Command::Dataplane(args) => {
            let _telemetry = lbaas::server::Telemetry::init(&lbaas::server::TelemetryConfig {
                service_name: "lbaas-dataplane".into(),
                otlp_endpoint: None,
                json_logs: false,
            })?;
            lbaas_agent::dataplane::run(args).await
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::CommandFactory as _;
    use lbaas::{api::v1 as pb, scheduler::v1 as spb};

    fn parse(line: &str) -> Cli {
        Cli::try_parse_from(std::iter::once("lbctl").chain(line.split_whitespace()))
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn fails(line: &str) -> String {
        Cli::try_parse_from(std::iter::once("lbctl").chain(line.split_whitespace()))
            .err()
            .unwrap_or_else(|| panic!("{line} parsed"))
            .to_string()
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn loadbalancer_create_and_the_lb_alias() {
        let cli =
            parse("lb create --name web --vip-address 127.0.10.5 --tag a --tag b --wait -o json");
        assert_eq!(cli.output, Some(output::Format::Json));
        let Command::Loadbalancer(Loadbalancer::Tenant(loadbalancer::Command::Create(c))) =
            cli.command
        else {
            panic!("not a create");
        };
        assert_eq!(c.name.as_deref(), Some("web"));
        assert_eq!(c.vip_address.as_deref(), Some("127.0.10.5"));
        assert_eq!(c.tags.tags, ["a", "b"]);
        assert!(c.wait.wait);
        assert_eq!(c.wait.wait_timeout, 300);
        // openstack's -f, and the one-call tree of the README.
        let cli = parse(
            "loadbalancer create web --listener HTTP:8080 --member 127.0.0.1:8001 --member 127.0.0.1:8002 -f yaml",
        );
        assert_eq!(cli.output, Some(output::Format::Yaml));
        let Command::Loadbalancer(Loadbalancer::Tenant(loadbalancer::Command::Create(c))) =
            cli.command
        else {
            panic!("not a create");
        };
        assert_eq!(c.positional_name.as_deref(), Some("web"));
        assert_eq!(c.members.len(), 2);
        assert!(fails("lb create --member 127.0.0.1:80").contains("--listener"));
    }

    #[test]
    fn listener_create_takes_openstack_options() {
        let cli = parse(
            "loadbalancer listener create --protocol terminated_https --protocol-port 443 --name l \
             --allowed-cidr 10.0.0.0/8 --allowed-cidr 192.168.0.0/16 \
             --insert-headers X-Forwarded-For=true,X-Forwarded-Proto=true \
             --timeout-client-data 5000 --connection-limit -1 \
             --default-tls-container-ref c1 --sni-container-refs c2 c3 --wait-timeout 10 LB",
        );
        let Command::Loadbalancer(Loadbalancer::Tenant(loadbalancer::Command::Listener(
            listener::Command::Create(c),
        ))) = cli.command
        else {
            panic!("not a listener create");
        };
        assert_eq!(c.loadbalancer, "LB");
        assert_eq!(c.protocol, pb::Protocol::TerminatedHttps);
        assert_eq!(c.protocol_port, 443);
        assert_eq!(c.settings.allowed_cidrs, ["10.0.0.0/8", "192.168.0.0/16"]);
        assert_eq!(c.settings.connection_limit, Some(-1));
        assert_eq!(c.settings.timeout_client_data, Some(5000));
        assert_eq!(c.settings.sni_container_refs.unwrap(), ["c2", "c3"]);
        assert_eq!(c.wait.wait_timeout, 10);
        assert!(fails("lb listener create --protocol SMTP --protocol-port 25 LB").contains("SMTP"));
        assert!(fails("lb listener create --protocol-port 80 LB").contains("--protocol"));
    }

    #[test]
    fn pool_create_needs_a_listener_or_load_balancer() {
        let cli = parse(
            "lb pool create --protocol HTTP --lb-algorithm least_connections --listener L \
             --session-persistence type=APP_COOKIE,cookie_name=JSESSIONID --enable-tls",
        );
        let Command::Loadbalancer(Loadbalancer::Tenant(loadbalancer::Command::Pool(
            pool::Command::Create(c),
        ))) = cli.command
        else {
            panic!("not a pool create");
        };
        assert_eq!(c.lb_algorithm, pb::LbAlgorithm::LeastConnections);
        let p = c.session_persistence.unwrap();
        assert_eq!(p.r#type(), pb::SessionPersistenceType::AppCookie);
        assert_eq!(p.cookie_name, "JSESSIONID");
        assert!(c.tls.enable_tls);
        let err = fails("lb pool create --protocol HTTP --lb-algorithm ROUND_ROBIN");
        assert!(
            err.contains("--listener") || err.contains("--loadbalancer"),
            "{err}"
        );
        assert!(
            fails("lb pool create --protocol HTTP --lb-algorithm ROUND_ROBIN --loadbalancer x --session-persistence type=NOPE")
                .contains("NOPE")
        );
    }

    #[test]
    fn member_commands_take_the_pool_first() {
        let cli = parse(
            "lb member create --address 10.0.0.5 --protocol-port 8080 --weight 5 --backup --disable POOL",
        );
        let Command::Loadbalancer(Loadbalancer::Tenant(loadbalancer::Command::Member(
            member::Command::Create(c),
        ))) = cli.command
        else {
            panic!("not a member create");
        };
        assert_eq!(c.pool, "POOL");
        assert_eq!(c.address, "10.0.0.5");
        assert_eq!(c.protocol_port, 8080);
        assert_eq!(c.weight, Some(5));
        assert!(c.backup.enable_backup);
        assert_eq!(c.admin.value(), Some(false));
        let cli = parse("lb member set --weight 0 POOL M");
        let Command::Loadbalancer(Loadbalancer::Tenant(loadbalancer::Command::Member(
            member::Command::Set(s),
        ))) = cli.command
        else {
            panic!("not a member set");
        };
        assert_eq!((s.pool.as_str(), s.member.as_str()), ("POOL", "M"));
        assert!(fails("lb member set --enable --disable POOL M").contains("cannot be used"));
    }

    #[test]
    fn healthmonitor_l7policy_and_l7rule() {
        let cli = parse(
            "lb healthmonitor create --type TLS-HELLO --delay 5 --timeout 3 --max-retries 2 POOL",
        );
        let Command::Loadbalancer(Loadbalancer::Tenant(loadbalancer::Command::Healthmonitor(
            healthmonitor::Command::Create(c),
        ))) = cli.command
        else {
            panic!("not a healthmonitor create");
        };
        assert_eq!(c.monitor_type, pb::HealthMonitorType::TlsHello);
        assert_eq!(c.settings.delay, Some(5));
        let cli = parse(
            "lb l7policy create --action REDIRECT_TO_URL --redirect-url http://x/ --redirect-http-code 301 --position 1 LISTENER",
        );
        let Command::Loadbalancer(Loadbalancer::Tenant(loadbalancer::Command::L7policy(
            l7policy::Command::Create(c),
        ))) = cli.command
        else {
            panic!("not an l7policy create");
        };
        assert_eq!(c.settings.action, Some(pb::L7PolicyAction::RedirectToUrl));
        assert_eq!(c.settings.redirect_http_code, Some(301));
        let cli = parse(
            "lb l7rule create --type HEADER --compare-type STARTS_WITH --key X-Env --value prod --invert POLICY",
        );
        let Command::Loadbalancer(Loadbalancer::Tenant(loadbalancer::Command::L7rule(
            l7rule::Command::Create(c),
        ))) = cli.command
        else {
            panic!("not an l7rule create");
        };
        assert_eq!(c.l7policy, "POLICY");
        assert_eq!(c.settings.rule_type, Some(pb::L7RuleType::Header));
        assert_eq!(
            c.settings.compare_type,
            Some(pb::L7RuleCompareType::StartsWith)
        );
        assert!(c.invert);
    }

    #[test]
    fn status_stats_quota_and_certificates() {
        parse("lb status show web");
        parse("lb stats show web -c bytes_in -c bytes_out");
        parse("lb listener stats show L");
        parse("lb quota show --usage");
        parse("lb quota set --loadbalancer -1 --member 100 p1");
        parse("lb quota reset p1");
        parse("lb delete --cascade --wait web");
        parse("lb failover --wait web");
        parse("certificate create --certificate-file c.pem --private-key-file k.pem --name c");
        assert!(
            fails("certificate create --certificate-file c.pem").contains("--private-key-file")
        );
    }

    #[test]
    fn operator_commands_and_the_amphora_alias() {
        let cli = parse(
            "lb flavor create --name gold --provider noop --strategy least-loaded \
             --required-label tier=gold --device-kind virtual --on-demand --on-demand-capacity 5 \
             --scheduler http://127.0.0.1:1",
        );
        assert_eq!(cli.scheduler, "http://127.0.0.1:1");
        let Command::Loadbalancer(Loadbalancer::Operator(operator::Command::Flavor(
            flavor::Command::Create(c),
        ))) = cli.command
        else {
            panic!("not a flavor create");
        };
        assert_eq!(c.driver.as_deref(), Some("noop"));
        assert_eq!(c.device_kind, Some(spb::DeviceKind::Virtual));
        assert_eq!(c.required_labels, [("tier".to_owned(), "gold".to_owned())]);
        assert_eq!(c.on_demand_capacity, Some(5));
        assert!(fails("lb flavor create --name x --on-demand-capacity 5").contains("--on-demand"));
        assert!(fails("lb flavor create --name x --required-label tier").contains("KEY=VALUE"));
        let cli = parse("lb amphora set --capacity 20 --label a=b --no-label --state draining D");
        let Command::Loadbalancer(Loadbalancer::Operator(operator::Command::Device(
            device::Command::Set(s),
        ))) = cli.command
        else {
            panic!("not a device set");
        };
        assert_eq!(s.device, "D");
        assert_eq!(s.capacity, Some(20));
        assert_eq!(s.state, Some(spb::DeviceState::Draining));
        assert!(s.labels.no_label);
        assert!(fails("lb device set --state UNSPECIFIED D").contains("ACTIVE, DRAINING, DOWN"));
        let cli = parse("lb explain --project p --flavor gold --member 10.0.0.5 --member 10.0.0.6");
        assert_eq!(cli.project, "p");
        let Command::Loadbalancer(Loadbalancer::Operator(operator::Command::Explain(e))) =
            cli.command
        else {
            panic!("not an explain");
        };
        assert_eq!(e.flavor.as_deref(), Some("gold"));
        assert_eq!(e.members, ["10.0.0.5", "10.0.0.6"]);
        parse("lb device list --agent a1 -o json");
        parse("lb device drain D");
        parse("lb network create --cidr 127.0.20.0/24 n1");
        parse("lb network delete n1");
        parse("lb agent list");
        parse("lb provider list -f value");
        parse("lb provider capability list haproxy");
        assert!(fails("lb network create n1").contains("--cidr"));
    }
}
