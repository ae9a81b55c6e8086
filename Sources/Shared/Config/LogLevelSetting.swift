import Logging

extension SettingSource {
    public func logLevel() throws -> Logger.Level {
        try choice(SharedSettings.logLevel, default: Logger.Level.info)
    }

    public func logFormat() throws -> LogSetup.Format {
        try choice(SharedSettings.logFormat, default: LogSetup.defaultFormat)
    }
}
