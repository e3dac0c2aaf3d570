//! The tenant-API commands of lbctl.
use std::time::Duration;

use anyhow::Context as _;
use lbaas::api::v1::{self as pb, load_balancer_service_client::LoadBalancerServiceClient};
use tonic::{Request, metadata::MetadataValue, transport::Channel};

#[derive(clap::Subcommand)]
pub enum LbCommand {
    /// Create a load balancer with one listener, its pool and members, in one call.
    Create {
        name: String,
        /// PROTOCOL:PORT of the listener, e.g. HTTP:8080 or TCP:5432.
        #[arg(long, default_value = "HTTP:80")]
        listener: String,
        /// ROUND_ROBIN, LEAST_CONNECTIONS or SOURCE_IP.
        #[arg(long, default_value = "ROUND_ROBIN")]
        algorithm: String,
        /// ADDRESS:PORT of a member; repeat for more.
        #[arg(long = "member")]
        members: Vec<String>,
        /// A VIP to use instead of an allocated one.
        #[arg(long)]
        vip: Option<String>,
        /// Wait until the load balancer is ACTIVE (or ERROR).
        #[arg(long)]
        wait: bool,
    },
    /// Show one load balancer.
    Show { id: String },
    /// List load balancers.
    List,
    /// Delete a load balancer and everything under it.
    Delete {
        id: String,
        #[arg(long)]
        wait: bool,
    },
}

#[derive(clap::Subcommand)]
pub enum MemberCommand {
    /// Add a member (ADDRESS:PORT) to a pool.
    Create {
        #[arg(long)]
        pool: String,
        address: String,
        #[arg(long)]
        weight: Option<i32>,
    },
    /// List a pool's members.
    List {
        #[arg(long)]
        pool: String,
    },
    /// Remove a member.
    Delete { id: String },
}

pub struct Client {
    inner: LoadBalancerServiceClient<Channel>,
    project: String,
    token: Option<String>,
}

fn split_host_port(s: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("{s:?} is not ADDRESS:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((
        host.to_owned(),
        port.parse().with_context(|| format!("bad port in {s:?}"))?,
    ))
}

fn status_name(s: i32) -> String {
    pb::ProvisioningStatus::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("PROVISIONING_STATUS_")
                .to_owned()
        })
        .unwrap_or_default()
}

fn operating_name(s: i32) -> String {
    pb::OperatingStatus::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("OPERATING_STATUS_")
                .to_owned()
        })
        .unwrap_or_default()
}

fn print_lb(lb: &pb::LoadBalancer) {
    println!("id                   {}", lb.id);
    println!("name                 {}", lb.name);
    println!("vip_address          {}", lb.vip_address);
    println!(
        "provisioning_status  {}",
        status_name(lb.provisioning_status)
    );
    println!(
        "operating_status     {}",
        operating_name(lb.operating_status)
    );
    if !lb.status_reason.is_empty() {
        println!("status_reason        {}", lb.status_reason);
    }
    println!(
        "generation           {} (applied {})",
        lb.generation, lb.applied_generation
    );
    println!("listeners            {}", lb.listener_ids.join(", "));
    println!("pools                {}", lb.pool_ids.join(", "));
}

impl Client {
    pub async fn connect(api: &str, project: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(api.to_owned())?
            .connect_timeout(Duration::from_secs(3))
            .connect()
            .await
            .with_context(|| format!("cannot reach the api at {api}"))?;
        Ok(Self {
            inner: LoadBalancerServiceClient::new(channel),
            project: project.to_owned(),
            token: token.map(str::to_owned),
        })
    }

    fn request<T>(&self, message: T) -> anyhow::Result<Request<T>> {
        let mut request = Request::new(message);
        match &self.token {
            Some(token) => {
                let value: MetadataValue<_> = format!("Bearer {token}").parse()?;
                request.metadata_mut().insert("authorization", value);
            }
            None => {
                request
                    .metadata_mut()
                    .insert("x-project-id", self.project.parse()?);
            }
        }
        Ok(request)
    }

    async fn get(&self, id: &str) -> Result<pb::LoadBalancer, tonic::Status> {
        let request = self
            .request(pb::GetLoadBalancerRequest { id: id.to_owned() })
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(self
            .inner
            .clone()
            .get_load_balancer(request)
            .await?
            .into_inner())
    }

    /// Follows the load balancer's watch stream, printing each status, until it leaves
    /// PENDING_* (or, for a delete, until it is gone).
    async fn wait(&self, id: &str, gone: bool) -> anyhow::Result<()> {
        use tokio_stream::StreamExt as _;
        let started = std::time::Instant::now();
        let mut events = self
            .inner
            .clone()
            .watch_load_balancer(self.request(pb::WatchLoadBalancerRequest { id: id.to_owned() })?)
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
        while let Some(event) = events.next().await {
            let event = event.map_err(|s| anyhow::anyhow!("{}", s.message()))?;
            let kind = event.kind();
            let Some(lb) = event.load_balancer else {
                continue;
            };
            let status = status_name(lb.provisioning_status);
            println!(
                "{:>6} ms  {status:<14} {:<10} vip {}",
                started.elapsed().as_millis(),
                operating_name(lb.operating_status),
                if lb.vip_address.is_empty() {
                    "-"
                } else {
                    &lb.vip_address
                }
            );
            if kind == pb::ChangeKind::Deleted {
                return Ok(());
            }
            if !gone && !status.starts_with("PENDING") {
                print_lb(&lb);
                return Ok(());
            }
        }
        anyhow::bail!("the watch stream ended early; run `lbctl lb show {id}`")
    }

    pub async fn lb(&self, command: LbCommand) -> anyhow::Result<()> {
        let mut api = self.inner.clone();
        match command {
            LbCommand::Create {
                name,
                listener,
                algorithm,
                members,
                vip,
                wait,
            } => {
                let (protocol, port) = listener
                    .split_once(':')
                    .context("--listener is PROTOCOL:PORT")?;
                let protocol =
                    pb::Protocol::from_str_name(&format!("PROTOCOL_{}", protocol.to_uppercase()))
                        .with_context(|| format!("unknown protocol {protocol}"))?;
                let lb_algorithm = pb::LbAlgorithm::from_str_name(&format!(
                    "LB_ALGORITHM_{}",
                    algorithm.to_uppercase()
                ))
                .with_context(|| format!("unknown algorithm {algorithm}"))?;
                let members = members
                    .iter()
                    .map(|m| {
                        let (address, protocol_port) = split_host_port(m)?;
                        Ok(pb::Member {
                            address,
                            protocol_port,
                            ..Default::default()
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let lb = pb::LoadBalancer {
                    name,
                    vip_address: vip.unwrap_or_default(),
                    listeners: vec![pb::Listener {
                        protocol: protocol as i32,
                        protocol_port: port.parse().context("bad listener port")?,
                        default_pool: Some(pb::Pool {
                            protocol: protocol as i32,
                            lb_algorithm: lb_algorithm as i32,
                            members,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                let created = api
                    .create_load_balancer(self.request(pb::CreateLoadBalancerRequest {
                        load_balancer: Some(lb),
                        request_id: String::new(),
                    })?)
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner();
                if wait {
                    self.wait(&created.id, false).await?;
                } else {
                    print_lb(&created);
                }
            }
            LbCommand::Show { id } => print_lb(
                &self
                    .get(&id)
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?,
            ),
            LbCommand::List => {
                let mut token = String::new();
                println!(
                    "{:<36}  {:<20}  {:<15}  {:<14}  OPERATING",
                    "ID", "NAME", "VIP", "PROVISIONING"
                );
                loop {
                    let page = api
                        .list_load_balancers(self.request(pb::ListLoadBalancersRequest {
                            page_token: token.clone(),
                            ..Default::default()
                        })?)
                        .await
                        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                        .into_inner();
                    for lb in &page.load_balancers {
                        println!(
                            "{:<36}  {:<20}  {:<15}  {:<14}  {}",
                            lb.id,
                            lb.name,
                            lb.vip_address,
                            status_name(lb.provisioning_status),
                            operating_name(lb.operating_status)
                        );
                    }
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    token = page.next_page_token;
                }
            }
            LbCommand::Delete { id, wait } => {
                api.delete_load_balancer(self.request(pb::DeleteLoadBalancerRequest {
                    id: id.clone(),
                    cascade: true,
                    etag: String::new(),
                })?)
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
                if wait {
                    self.wait(&id, true).await?;
                } else {
                    println!("deleting {id}");
                }
            }
        }
        Ok(())
    }

    pub async fn member(&self, command: MemberCommand) -> anyhow::Result<()> {
        let mut api = self.inner.clone();
        match command {
            MemberCommand::Create {
                pool,
                address,
                weight,
            } => {
                let (address, protocol_port) = split_host_port(&address)?;
                let member = api
                    .create_member(self.request(pb::CreateMemberRequest {
                        member: Some(pb::Member {
                            pool_id: pool,
                            address,
                            protocol_port,
                            weight,
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    })?)
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner();
                println!("{}", member.id);
            }
            MemberCommand::List { pool } => {
                let page = api
                    .list_members(self.request(pb::ListMembersRequest {
                        pool_id: pool,
                        page_size: 1000,
                        page_token: String::new(),
                    })?)
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner();
                println!(
                    "{:<36}  {:<22}  {:<6}  {:<14}  OPERATING",
                    "ID", "ADDRESS", "WEIGHT", "PROVISIONING"
                );
                for m in page.members {
                    println!(
                        "{:<36}  {:<22}  {:<6}  {:<14}  {}",
                        m.id,
                        format!("{}:{}", m.address, m.protocol_port),
                        m.weight.unwrap_or(1),
                        status_name(m.provisioning_status),
                        operating_name(m.operating_status)
                    );
                }
            }
            MemberCommand::Delete { id } => {
                api.delete_member(self.request(pb::DeleteMemberRequest { id: id.clone() })?)
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
                println!("deleted {id}");
            }
        }
        Ok(())
    }
}
