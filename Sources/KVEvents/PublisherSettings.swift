import KVConfig

/// The event publisher from the library's settings (`events.*` of the YAML file and `KVCACHE_EVENTS_*`
/// variables, docs/CONFIGURATION.md): the same file that sizes the cache and its tiers brings up the
/// publisher.
extension ZmqEventPublisher.Config {
    /// `endpoint`, `replay_endpoint`, `topic`, `buffer_steps`, `hwm` and `data_parallel_rank` of
    /// `settings` (whether `enabled` or not). O(1).
    public init(settings: EventSettings) {
        self.init()
        endpoint = settings.endpoint
        replayEndpoint = settings.replayEndpoint
        topic = settings.topic
        bufferSteps = settings.bufferSteps
        hwm = settings.highWaterMark
        dataParallelRank = settings.dataParallelRank
    }
}

extension ZmqEventPublisher {
    /// A publisher bound where `settings.events` says, or nil when `events.enabled` is false.
    /// - Throws: `KVConfigError.invalidValue` naming `events.endpoint` or `events.replay_endpoint` when
    ///   that address cannot be bound (in use, no such interface), with libzmq's reason; nothing is left
    ///   open then.
    public static func open(settings: KVSettings) throws(KVConfigError) -> ZmqEventPublisher? {
        guard settings.events.enabled else { return nil }
        do {
            return try ZmqEventPublisher(Config(settings: settings.events))
        } catch {
            let key: KVConfigKey = if case .bind(let endpoint, _) = error, endpoint == settings.events.replayEndpoint,
                                      endpoint != settings.events.endpoint { .replayEndpoint } else { .endpoint }
            throw .invalidValue(key: key.name, variable: key.variable, message: error.description)
        }
    }
}
