import Logging



extension SettingSource {
    public func logLevel(_ flag: String?) throws -> Logger.Level {
        try choice(flag, flagName: "--log-level", env: "SPOOL_LOG_LEVEL", default: Logger.Level.info)
    }
}
